"""Training: one loop over a population of K members (a run alone is K = 1).

  build.py          setup: data, mesh, model, state, feed of one run (also for evaluate)
  state.py          TrainState and the optimizer of a config
  steps.py          pure steps: train, a group member's train, eval, predict
  early_stopping.py EarlyStopping
  workdir.py        checks before writing, the lock, config.json, resume and corruption
  population.py     members, what a group may vary, solo and stacked (vmapped) programs
  loop.py           run(configs, workdirs) and train_and_evaluate(config, workdir)
  evaluation.py     evaluate_params, the end of a run: summary.json, predictions, plots
  model_files.py    model.json, vocab.json, pretrained/: what predicting needs, at the start

jaxreg.evaluate reuses `setup` and `evaluate_params`, so it recomputes exactly what was
logged.
"""

from jaxreg.train.build import Setup, compile_steps, epoch_batches, restore, setup
from jaxreg.train.early_stopping import EarlyStopping
from jaxreg.train.evaluation import EpochTimes, evaluate_params
from jaxreg.train.loop import run, train_and_evaluate
from jaxreg.train.state import TrainingDiverged, TrainState, make_optimizer
from jaxreg.train.steps import eval_step, eval_variables, loss_and_logits, train_step
from jaxreg.train.workdir import run_config, saved_config

__all__ = ["EarlyStopping", "EpochTimes", "Setup", "TrainState", "TrainingDiverged", "compile_steps",
           "epoch_batches", "eval_step", "eval_variables", "evaluate_params",
           "loss_and_logits", "make_optimizer", "restore", "run", "run_config",
           "saved_config", "setup", "train_and_evaluate", "train_step"]
