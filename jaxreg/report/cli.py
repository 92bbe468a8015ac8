"""The flags and main of `python -m jaxreg.report` (the help text is in __main__.py)."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
from absl import app, flags

from jaxreg import cli
from jaxreg.report import calibration, power
from jaxreg.report.load import ReportError, load_sweep
from jaxreg.report.markdown import REPORT_DIR, write_report
from jaxreg.sweep.axes import SweepError, cast_value

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A sweep directory written by jaxreg.sweep.")
flags.DEFINE_string("axis", None, "The setting to analyse (default: the first reg.* "
                    "or dropout axis, else the first non-seed axis).")
flags.DEFINE_string("baseline", None, "Baseline value of --axis (default: smallest).")
flags.DEFINE_enum("correction", "holm", ["holm", "bh"],
                  "Multiple-comparison correction over classes x compared values.")
flags.DEFINE_float("alpha", 0.05, "Significance level after correction.")
flags.DEFINE_integer("reps", 2000, "Bootstrap replicates (one seed's balanced and "
                     "worst-class accuracy intervals).")
flags.DEFINE_integer("bootstrap_seed", 0, "Seed of that bootstrap (and of calibrate).")
flags.DEFINE_multi_string("fix", [], "KEY=VALUE: hold another setting axis here.")
flags.DEFINE_bool("null_split", False, "Compare the first half of the seeds with the "
                  "second half (paired in order) as if they were two settings.")
flags.DEFINE_bool("plan", False, "Print how many seeds the flag needs (with --effect; "
                  "from a pilot --workdir or --class_sizes and --seed_sd).")
flags.DEFINE_float("effect", None, "--plan: the drop to detect, in points.")
flags.DEFINE_list("class_sizes", [], "--plan: test examples per class.")
flags.DEFINE_float("seed_sd", None, "--plan: sd over seeds of a class's per-seed "
                   "change, in points (default: from the pilot --workdir).")
flags.DEFINE_float("accuracy", None, "--plan: baseline class accuracy in percent "
                   "(default: from the pilot, else 90).")
flags.DEFINE_integer("compared_values", None, "--plan: values compared with the "
                     "baseline (the family is classes x values; default: the "
                     "pilot's, else 1).")
flags.DEFINE_float("power", 0.8, "--plan: the power to reach.")
flags.DEFINE_integer("sweeps", 1000, "calibrate: simulated sweeps per cell.")
flags.DEFINE_bool("quick", False, "calibrate: a small grid (seconds).")


def _plan_input(fix) -> power.PlanInput:
  if FLAGS.workdir:
    p = power.pilot_estimates(FLAGS.workdir, FLAGS.axis, FLAGS.baseline, fix)
  elif FLAGS.class_sizes:
    p = power.given_sizes(FLAGS.class_sizes, FLAGS.seed_sd)
  else:
    raise ReportError("--plan needs a pilot sweep (--workdir) or --class_sizes")
  if FLAGS.accuracy is not None:
    if not 0 < FLAGS.accuracy <= 100:
      raise ReportError(f"--accuracy={FLAGS.accuracy}: a percentage in (0, 100]")
    p = dataclasses.replace(p, accuracy=np.full(len(p.n), FLAGS.accuracy / 100))
  if FLAGS.seed_sd is not None:
    if FLAGS.seed_sd < 0:
      raise ReportError(f"--seed_sd={FLAGS.seed_sd}: must be >= 0 (points)")
    p = dataclasses.replace(p, seed_sd=np.full(len(p.n), FLAGS.seed_sd / 100))
  if FLAGS.compared_values is not None:
    if FLAGS.compared_values < 1:
      raise ReportError(f"--compared_values={FLAGS.compared_values}: must be >= 1")
    p = dataclasses.replace(p, values=FLAGS.compared_values)
  return p


def _fix_values() -> dict:
  fix = {}
  if FLAGS.fix:
    sweep_axes = {a.key: a for a in load_sweep(FLAGS.workdir).axes}
    for spec in FLAGS.fix:
      k, sep, v = spec.partition("=")
      if not sep or k not in sweep_axes:
        raise ReportError(f"--fix={spec!r} must be KEY=VALUE with KEY one of: "
                          f"{', '.join(sweep_axes)}")
      fix[k] = cast_value(k, v, sweep_axes[k].type_name)
  return fix


def main(argv):
  if argv[1:] == ["calibrate"]:
    if FLAGS.sweeps < 10:
      cli.fail(f"--sweeps={FLAGS.sweeps}: use at least 10 simulated sweeps per cell")
    ok = calibration.main(FLAGS.sweeps, FLAGS.bootstrap_seed, FLAGS.quick)
    sys.exit(0 if ok else 1)
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])} (the only command is "
             "`calibrate`)")
  try:
    if FLAGS.plan:
      if FLAGS.effect is None or not 0 < FLAGS.effect <= 100:
        raise ReportError("--plan needs --effect=POINTS, the drop to detect (0, 100]")
      fix = _fix_values() if FLAGS.workdir else {}
      print("\n".join(power.plan_lines(_plan_input(fix), FLAGS.effect / 100,
                                       FLAGS.alpha, FLAGS.power)))
      return
    if not FLAGS.workdir:
      cli.fail("--workdir is required")
    out = write_report(FLAGS.workdir, FLAGS.axis, FLAGS.baseline, _fix_values(),
                       FLAGS.correction, FLAGS.alpha, FLAGS.reps, FLAGS.bootstrap_seed,
                       FLAGS.null_split)
  except SweepError as e:
    cli.fail(str(e))
  print(f"wrote {out} and {out.parent / REPORT_DIR}/")


def run():
  app.run(main, flags_parser=cli.parse_flags)
