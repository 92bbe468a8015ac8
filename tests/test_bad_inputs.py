"""A catalogue of the mistakes a user makes (config, data, workdir, checkpoint, command
line): each one exits with its documented code and ONE line `error: ...` on stderr,
and leaves the workdir exactly as it was (not even an empty directory or config.json
when it did not exist). The command lines run in one process per CLI module
(tests/cli_driver.py), with their flags parsed from scratch each time."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxreg import io, lock, train
from tests.conftest import ROOT, python_env, tiny_config

MAIN = ["jaxreg.main", "--config=configs/lstm.py:tiny"]


def _csv(d: Path, name: str, rows: list[str]) -> str:
  d.mkdir(parents=True, exist_ok=True)
  (d / name).write_text("text,label\n" + "\n".join(rows) + "\n")
  return str(d / name)


def _csv_data(d: Path) -> list[str]:
  words = {"a": "apple pear", "b": "bus train", "c": "cat dog"}
  train = _csv(d, "train.csv", [f"{words[c]} {i},{c}" for i in range(40) for c in "abc"])
  test = _csv(d, "test.csv", [f"{words[c]},{c}" for c in "abc"])
  return ["--config.data.source=csv", f"--config.data.train_file={train}",
          f"--config.data.test_file={test}", f"--config.data.cache_dir={d}/cache"]


def _truncate_largest(step_dir: Path) -> None:
  big = max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])


# Every case: (id, module argv, expected exit code, words the error line must hold,
# prepare(base, workdir) -> extra argv, errno to inject under the workdir or None).
# {w} in argv is the case's workdir, {d} its scratch directory.
def _cases(finished: Path):
  def copy(_, w):
    shutil.copytree(finished, w)

  def edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))

  def other_config(_, w):
    copy(_, w)
    edit_json(w / "config.json", lambda c: c["optim"].update(learning_rate=0.5))

  def truncated_config(_, w):
    copy(_, w)
    text = (w / "config.json").read_text()
    (w / "config.json").write_text(text[: len(text) // 2])

  def no_config_json(_, w):
    copy(_, w)
    (w / "config.json").unlink()

  def torn_middle_metrics(_, w):
    copy(_, w)
    lines = (w / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:20]
    (w / "metrics.jsonl").write_text("\n".join(lines) + "\n")

  def corrupt_checkpoints(_, w):
    copy(_, w)
    for step in (w / "checkpoints").iterdir():
      if step.name.isdigit():
        _truncate_largest(step)

  def a_file(d, w):
    d.mkdir(parents=True, exist_ok=True)
    w.write_text("not a directory\n")

  def parent_file(d, w):  # with --workdir={w}/run
    w.write_text("not a directory\n")

  def empty_dir(_, w):
    w.mkdir(parents=True)

  def config_file(text):
    def prepare(d, _):
      d.mkdir(parents=True, exist_ok=True)
      (d / "cfg.py").write_text(text)
    return prepare

  def csv_data(d, _):
    return _csv_data(d)

  def csv_rows(train_rows, test_rows):
    def prepare(d, _):
      return ["--config.data.source=csv",
              f"--config.data.train_file={_csv(d, 'train.csv', train_rows)}",
              f"--config.data.test_file={_csv(d, 'test.csv', test_rows)}",
              f"--config.data.cache_dir={d}/cache"]
    return prepare

  ok_rows = [f"w{i} x,{'ab'[i % 2]}" for i in range(40)]
  c = [
      # ------------------------------------------------------------ config files
      ("config_syntax_error", ["jaxreg.main", "--config={d}/cfg.py", "--workdir={w}"], 2,
       ["cfg.py", "line 1", "SyntaxError"], config_file("def get_config(:\n"), None),
      ("config_raises", ["jaxreg.main", "--config={d}/cfg.py", "--workdir={w}"], 2,
       ["boom"], config_file("def get_config():\n  raise ValueError('boom')\n"), None),
      ("config_without_get_config", ["jaxreg.main", "--config={d}/cfg.py", "--workdir={w}"],
       2, ["get_config"], config_file("x = 1\n"), None),
      ("config_file_missing", ["jaxreg.main", "--config={d}/nope.py", "--workdir={w}"], 2,
       ["nope.py"], None, None),
      ("config_file_misspelt", ["jaxreg.main", "--config=configs/lsmt.py", "--workdir={w}"],
       2, ["configs/lsmt.py", "(did you mean configs/lstm.py?)"], None, None),
      ("config_variant_unknown", ["jaxreg.main", "--config=configs/lstm.py:bogus",
                                  "--workdir={w}"], 2, ["bogus", "tiny"], None, None),
      # ------------------------------------------------------------ config keys
      ("key_unknown", [*MAIN, "--workdir={w}", "--config.model.cel=gru"], 2,
       ["model.cel", "(did you mean model.cell?)"], None, None),
      ("key_choice", [*MAIN, "--workdir={w}", "--config.model.cell=transformer"], 2,
       ["model.cell", "lstm"], None, None),
      ("optimizer_unknown", [*MAIN, "--workdir={w}", "--config.optim.name=adamx"], 2,
       ["optim.name", "adam"], None, None),
      ("optimizer_adamw", [*MAIN, "--workdir={w}", "--config.optim.name=adamw"], 2,
       ["optim.name='adamw'", "AdamW is optim.name=adam with reg.weight_decay"], None,
       None),
      ("optimizer_key_unused_but_wrong", [*MAIN, "--workdir={w}",
                                          "--config.optim.momentum=1.5"], 2,
       ["optim.momentum=1.5", "[0, 1)"], None, None),
      ("dropout_negative", [*MAIN, "--workdir={w}", "--config.model.dropout.embed=-0.1"],
       2, ["model.dropout.embed"], None, None),
      ("dropout_one", [*MAIN, "--workdir={w}", "--config.model.dropout.output=1.0"], 2,
       ["model.dropout.output", "[0, 1)"], None, None),
      ("weight_decay_negative", [*MAIN, "--workdir={w}", "--config.reg.weight_decay=-1.0"],
       2, ["reg.weight_decay"], None, None),
      ("learning_rate_zero", [*MAIN, "--workdir={w}", "--config.optim.learning_rate=0.0"],
       2, ["optim.learning_rate"], None, None),
      ("learning_rate_nan", [*MAIN, "--workdir={w}", "--config.optim.learning_rate=nan"],
       2, ["optim.learning_rate=nan", "finite"], None, None),
      ("learning_rate_inf", [*MAIN, "--workdir={w}", "--config.optim.learning_rate=inf"],
       2, ["optim.learning_rate=inf", "finite"], None, None),
      ("min_delta_nan", [*MAIN, "--workdir={w}",
                         "--config.train.early_stopping.min_delta=nan"], 2,
       ["train.early_stopping.min_delta=nan", "finite"], None, None),
      ("clip_norm_inf", [*MAIN, "--workdir={w}", "--config.reg.clip_norm=inf"], 2,
       ["reg.clip_norm=inf"], None, None),
      ("val_fraction_nan", [*MAIN, "--workdir={w}", "--config.data.val_fraction=nan"], 2,
       ["data.val_fraction=nan"], None, None),
      ("batch_size_zero", [*MAIN, "--workdir={w}", "--config.train.batch_size=0"], 2,
       ["train.batch_size=0"], None, None),
      ("epochs_negative", [*MAIN, "--workdir={w}", "--config.train.epochs=-1"], 2,
       ["train.epochs=-1"], None, None),
      ("int_key_given_text", [*MAIN, "--workdir={w}", "--config.train.epochs=ten"], 2,
       ["ten"], None, None),
      ("folds_one", [*MAIN, "--workdir={w}", "--config.data.folds=1"], 2,
       ["data.folds=1"], None, None),
      ("fold_out_of_range", [*MAIN, "--workdir={w}", "--config.data.folds=3",
                             "--config.data.fold=5"], 2, ["data.fold=5", "0..2"], None,
       None),
      ("source_unknown", [*MAIN, "--workdir={w}", "--config.data.source=parquet"], 2,
       ["data.source='parquet'", "csv"], None, None),
      ("bert_without_model", [*MAIN, "--workdir={w}", "--config.model.family=bert"], 2,
       ["model.pretrained"], None, None),
      ("checkpoint_metric_unknown", [*MAIN, "--workdir={w}",
                                     "--config.train.checkpoint_metric=f1"], 2,
       ["train.checkpoint_metric='f1'", "macro_f1"], None, None),
      ("buckets_not_numbers", [*MAIN, "--workdir={w}", "--config.data.buckets=a,b"], 2,
       ["buckets"], None, None),
      ("batch_larger_than_dataset", [*MAIN, "--workdir={w}",
                                     "--config.train.batch_size=5000"], 2,
       ["train.batch_size=5000", "training split"], None, None),
      # ----------------------------------------------------------------- data
      ("train_file_misspelt", [*MAIN, "--workdir={w}", "--config.data.source=csv",
                               "--config.data.train_file={d}/trian.csv",
                               "--config.data.test_fraction=0.2"], 2, ["trian.csv"],
       None, None),
      ("csv_row_malformed", [*MAIN, "--workdir={w}"], 2, ["train.csv"],
       csv_rows(ok_rows[:20] + ['"unclosed quote,a'] + ok_rows[20:], ["w1 x,a"]), None),
      ("csv_test_label_unseen", [*MAIN, "--workdir={w}"], 2, ["zebra"],
       csv_rows(ok_rows, ["w1 x,zebra"]), None),
      ("folder_root_missing", [*MAIN, "--workdir={w}", "--config.data.source=folder",
                               "--config.data.root={d}/texts"], 2, ["texts"], None, None),
      ("embeddings_file_missing", [*MAIN, "--workdir={w}",
                                   "--config.model.embeddings_file={d}/vectors.txt"], 2,
       ["vectors.txt"], None, None),
      # --------------------------------------------------------------- workdir
      ("workdir_is_a_file", [*MAIN, "--workdir={w}"], 2, ["is a file"], a_file, None),
      ("workdir_parent_is_a_file", [*MAIN, "--workdir={w}/run"], 2, ["is a file"],
       parent_file, None),
      ("workdir_unwritable", [*MAIN, "--workdir={w}"], 2, ["not writable",
                                                          "permission denied"],
       empty_dir, "EACCES"),
      ("workdir_parent_unwritable", [*MAIN, "--workdir={w}/run"], 2, ["not writable"],
       empty_dir, "EACCES"),
      ("workdir_read_only_filesystem", [*MAIN, "--workdir={w}"], 2,
       ["read-only filesystem"], empty_dir, "EROFS"),
      ("disk_full", [*MAIN, "--workdir={w}"], io.WRITE_REFUSED,
       ["no space left on device", "free"], None, "ENOSPC"),
      ("config_json_other_settings", [*MAIN, "--workdir={w}"], 2,
       ["optim.learning_rate", "new --workdir"], other_config, None),
      ("config_json_truncated", [*MAIN, "--workdir={w}"], 2, ["config.json", "damaged"],
       truncated_config, None),
      ("config_json_deleted_other_settings", [*MAIN, "--workdir={w}",
                                              "--config.optim.learning_rate=0.5"], 2,
       ["optim.learning_rate", "checkpoint step"], no_config_json, None),
      ("metrics_line_damaged", [*MAIN, "--workdir={w}"], 2, ["metrics.jsonl", "line 3"],
       torn_middle_metrics, None),
      ("workdir_in_use", [*MAIN, "--workdir={w}"], 2, ["in use", "pid"], "locked", None),
      # ------------------------------------------------------------ checkpoints
      ("checkpoints_all_corrupt", [*MAIN, "--workdir={w}"], 2,
       ["checkpoints/", "corrupt", "move"], corrupt_checkpoints, None),
      ("evaluate_corrupt", ["jaxreg.evaluate", "--workdir={w}"], 2, ["corrupt"],
       corrupt_checkpoints, None),
      ("evaluate_checkpoint_unknown", ["jaxreg.evaluate", "--workdir={w}",
                                       "--checkpoint=first"], 2, ["first", "best, latest"],
       copy, None),
      ("evaluate_workdir_missing", ["jaxreg.evaluate", "--workdir={w}"], 2,
       ["not a directory"], None, None),
      ("evaluate_not_a_run", ["jaxreg.evaluate", "--workdir={w}"], 2, ["config.json"],
       empty_dir, None),
      ("evaluate_split_unknown", ["jaxreg.evaluate", "--workdir={w}", "--split=dev"], 2,
       ["dev"], copy, None),
      # ------------------------------------------------------------ command line
      ("argument_stray", [*MAIN, "--workdir={w}", "extra"], 2, ["extra"], None, None),
      ("workdir_flag_missing", MAIN, 2, ["--workdir"], None, None),
      ("config_flag_missing", ["jaxreg.main", "--workdir={w}"], 2, ["--config"], None,
       None),
      ("flag_misspelt", [*MAIN, "--wrokdir={w}"], 2, ["wrokdir"], None, None),
      ("distributed_flags_partial", [*MAIN, "--workdir={w}", "--num_processes=2"], 2,
       ["--coordinator_address"], None, None),
      ("config_command_key_unknown", ["jaxreg.config.__main__",
                                      "--config=configs/lstm.py:tiny",
                                      "--config.model.cel=gru"], 2,
       ["(did you mean model.cell?)"], None, None),
      ("config_command_file_misspelt", ["jaxreg.config.__main__",
                                        "--config=configs/lsmt.py"], 2,
       ["(did you mean configs/lstm.py?)"], None, None),
      ("config_command_value_bad", ["jaxreg.config.__main__", "--config=configs/lstm.py",
                                    "--config.optim.name=adamw"], 2, ["AdamW"], None,
       None),
      ("config_command_argument_stray", ["jaxreg.config.__main__", "extra"], 2,
       ["extra"], None, None),
      ("sweep_axis_key_unknown", ["jaxreg.sweep", "--config=configs/lstm.py:tiny",
                                  "--workdir={w}", "--axis=reg.wd=0,1"], 2, ["reg.wd"],
       None, None),
      ("sweep_axis_value_type", ["jaxreg.sweep", "--config=configs/lstm.py:tiny",
                                 "--workdir={w}", "--axis=train.epochs=1,two"], 2,
       ["two"], None, None),
      ("sweep_point_invalid", ["jaxreg.sweep", "--config=configs/lstm.py:tiny",
                               "--workdir={w}", "--axis=reg.l2=0,-1"], 2, ["reg.l2"],
       None, None),
      ("sweep_workdir_is_a_file", ["jaxreg.sweep", "--config=configs/lstm.py:tiny",
                                   "--workdir={w}", "--axis=reg.l2=0,1e-3"], 2,
       ["is a file"], a_file, None),
      ("sweep_in_use", ["jaxreg.sweep", "--config=configs/lstm.py:tiny", "--workdir={w}",
                        "--axis=reg.l2=0,1e-3"], 2, ["in use"], "locked", None),
  ]
  return c


def _snapshot(path: Path):
  """Everything under `path`: relative path -> 'dir' or the file's sha256."""
  if not path.exists():
    return None
  if path.is_file():
    return hashlib.sha256(path.read_bytes()).hexdigest()
  return {p.relative_to(path).as_posix(): "dir" if p.is_dir() else
          hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("finished")
  train.train_and_evaluate(tiny_config(), workdir)
  return workdir


@pytest.fixture(scope="module")
def outcomes(finished, tmp_path_factory):
  """Runs every case (one process per CLI module); {id: (result, case, before, after)}."""
  base = tmp_path_factory.mktemp("cases")
  by_module, prepared, holders = {}, {}, []
  for id_, argv, code, words, prepare, errno_name in _cases(finished):
    d, w = base / id_, base / id_ / "w"
    d.mkdir()
    extra = []
    if prepare == "locked":
      holders.append(lock.acquire(w, "workdir"))  # this process holds it meanwhile
    elif prepare is not None:
      extra = prepare(d, w) or []
    watched = w
    argv = [a.replace("{w}", str(w)).replace("{d}", str(d)) for a in argv] + extra
    case = {"id": id_, "argv": argv,
            "inject": {"errno": errno_name, "under": str(w)} if errno_name else None}
    by_module.setdefault(argv[0], []).append(case)
    prepared[id_] = (code, words, watched, _snapshot(watched))
  results = {}
  try:
    for module, cases in by_module.items():
      proc = subprocess.run([sys.executable, "-m", "tests.cli_driver", module],
                            input=json.dumps(cases), cwd=ROOT, env=python_env(),
                            capture_output=True, text=True, timeout=600)
      assert proc.returncode == 0, proc.stderr[-3000:]
      results.update(json.loads(proc.stdout.strip().splitlines()[-1]))
  finally:
    for held in holders:
      held.release()
  return {id_: (results[id_], prepared[id_], _snapshot(prepared[id_][2]))
          for id_ in prepared}


CASE_IDS = [c[0] for c in _cases(Path("."))]


def test_the_catalogue_is_large():
  assert len(CASE_IDS) >= 40 and len(set(CASE_IDS)) == len(CASE_IDS)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASE_IDS)
def test_bad_input_is_one_line_with_its_exit_code_and_the_workdir_untouched(outcomes,
                                                                             case):
  result, (code, words, watched, before), after = outcomes[case]
  lines = [l for l in result["stderr"].splitlines() if l.strip()]
  assert result["code"] == code, result["stderr"][-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), result["stderr"][-3000:]
  for word in words:
    assert word in lines[0], lines[0]
  assert after == before, f"{watched} changed"
