"""python -m jaxreg.evaluate --workdir=DIR --split=test|val [--checkpoint=best|latest|STEP]

Restores a checkpoint of a finished or running workdir, recomputes the evaluation with
the same code the trainer used, prints a per-class table and writes
DIR/eval/<split>-<checkpoint>.json (for `best` it equals summary.json's) and the
per-example predictions DIR/eval/<split>-<checkpoint>.npz (labels, predictions, step).

Safe to run while the run is still training: it changes nothing the trainer wrote and
writes only those two files. A checkpoint the trainer deletes while it is being read
is a one-line error (run it again).
"""

# It takes no lock; orbax is opened read-only (no cleanup of a running trainer's save
# in flight) and both files are written atomically.

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from jaxreg import cli, config as config_lib, io, records

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A workdir written by jaxreg.main.")
flags.DEFINE_enum("split", "test", ["test", "val", "train"], "Split to evaluate.")
flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number.")


def evaluate_workdir(workdir, split: str = "test", checkpoint: str = "best",
                     devices=None) -> dict:
  """The evaluation object for `split` at `checkpoint`; also writes it under eval/."""
  # Here, not at the top: the trainer imports jax and flax, which `--help` need not.
  from jaxreg import checkpoint as checkpoint_lib, metrics, train
  from jaxreg.train import model_files
  workdir = Path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f"--workdir={workdir} is not a directory written by "
                            "jaxreg.main")
  # config.json, else the checkpoint's copy; keys added to jaxreg after the run was
  # written take their defaults.
  config = train.run_config(workdir)
  # BERT: the workdir's tokenizer and model config, not model.pretrained's directory
  # (which a moved workdir may not reach); the checkpoint holds the weights.
  model_files.localize(config, workdir, model_files.read(workdir))
  config_lib.validate(config)
  s = train.setup(config, workdir, devices, checkpoints="read")
  try:
    step = s.checkpointer.named_step(checkpoint)
    state, meta = train.restore(s, step)
    result, preds = train.evaluate_params(s, state, split, predictions=True)
  except checkpoint_lib.CorruptCheckpoint as e:
    raise config_lib.ConfigError(
        f"{e}; rerun the training command on this workdir to set it aside and "
        "replay it from an earlier checkpoint") from None
  finally:
    s.checkpointer.close()
  evaluation = {"split": split, "step": step, "epoch": meta["epoch"], **result}
  out = records.eval_path(workdir, split, checkpoint)
  out.parent.mkdir(exist_ok=True)
  io.atomic_write_json(out, evaluation)
  # Per-example predictions beside it: jaxreg.report pairs test examples with them in
  # runs written before finish_run saved predictions_test.npz.
  records.write_predictions(out.with_suffix(".npz"), s.data.split(split).labels, preds,
                            step)
  print(f"{split} split, checkpoint {checkpoint} (step {step}, epoch {meta['epoch']})")
  print(metrics.format_table(evaluation))
  print(f"wrote {out}")
  return evaluation


def main(argv):
  cli.run_workdir(argv, FLAGS)
  with cli.user_errors(FLAGS.workdir):
    evaluate_workdir(FLAGS.workdir, FLAGS.split, FLAGS.checkpoint)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
