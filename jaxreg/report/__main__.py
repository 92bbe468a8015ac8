"""python -m jaxreg.report --workdir=DIR [--axis=KEY] [--baseline=VALUE] [--fix=KEY=VALUE]

Writes DIR/report.md, with PNG figures and CSV tables in DIR/report/, for a sweep
directory written by `python -m jaxreg.sweep`: how each class's test accuracy changes
with the swept setting.

  1. per-class test accuracy at each value (mean over seeds, 95% interval), beside
     accuracy, balanced, worst-class and validation accuracy;
  2. each class's change against the baseline value (--baseline, default the
     smallest), flagged when significant: a paired t-test over seeds, corrected with
     Holm (or --correction=bh) over classes x compared values; with fewer than 3
     paired seeds nothing is flagged and the report says why. Beside it, the exact
     McNemar test of the paired runs and the smallest drop the sweep could detect;
  3. the value mean validation accuracy chooses, and what it costs each class;
  4. where the lost examples go (the change in the confusion matrix);
  5. with two or more swept settings, heatmaps of mean validation accuracy per pair.

Seeds (and `data.fold` or `data.split_seed` when swept) are replicates: the report
averages over them and pairs runs by them. With several swept settings, --axis names
the one to analyse (default: the first reg.* or dropout axis, else the first); the
others are held at --fix=KEY=VALUE, or else at the values with the best mean
validation accuracy. A random search whose values do not repeat gets a ranking of the
runs and scatter plots instead.

Other uses:
  --null_split   compare the first half of the seeds with the second half, paired in
                 order, as if they were two settings: every flag is a false positive
  --plan --effect=POINTS [--workdir=PILOT | --class_sizes=N1,N2,... --seed_sd=POINTS]
                 how many seeds a sweep needs to flag a drop of that size
  calibrate      simulated null sweeps and real effects: checks the flag's
                 false-positive rate, coverage and power (--quick: a small grid)

From Python (a notebook): `from jaxreg.report import analyse, load_sweep`, then
`analyse(load_sweep(DIR), axis=KEY)` returns the numbers without writing anything.
"""

from absl import flags

from jaxreg.report import cli

flags.adopt_module_key_flags(cli)  # --help lists the flags defined in cli.py

if __name__ == "__main__":
  cli.run()
