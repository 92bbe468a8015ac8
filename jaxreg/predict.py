"""python -m jaxreg.predict --workdir=DIR [--text=...]... [--input=FILE|FOLDER|-]...
    [--split=test|val|train] [--checkpoint=best|latest|STEP] [--format=csv|jsonl]
    [--output=FILE]

Classifies new inputs with a trained run, from its workdir alone: the config
(config.json), the vocabulary or Hugging Face tokenizer, class names and image
normalization (model.json and its files, written at the start of every run), and the
checkpoint (orbax, opened read-only). The training data is not loaded, except by
--split, which predicts the run's own split of its data source (so it reproduces the
run's confusion matrix).

Inputs (any mix; `--input` may be repeated):
  --text=...            one text per flag
  --input=FILE.csv/.tsv/.jsonl   read with the run's data.text_fields and data.header
  --input=FILE          any other text file: one text per line (blank lines skipped)
  --input=-             lines from stdin
  --input=IMAGE|FOLDER  image runs: image files (.png, .jpg, .jpeg), folders searched
                        recursively in sorted order

Preprocessing is the training's: the same tokenizer functions, data.max_length,
data.buckets and eval batches (shortest first); images are decoded and resized as the
folder sources do and normalized with the run's training-set channel statistics.
Output (stdout unless --output): one row per input in input order, CSV with columns
index, input, [label,] prediction, then p:<class> for every class; or JSONL with
"probabilities": {class: p}.
"""

from __future__ import annotations

import sys

from absl import app, flags

from jaxreg import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A workdir written by jaxreg.main.")
flags.DEFINE_multi_string("text", [], "A text to classify (repeat the flag for more).")
flags.DEFINE_multi_string("input", [], "A file (csv/tsv/jsonl, lines, or an image), a "
                          "folder of images, or - for lines on stdin.")
flags.DEFINE_enum("split", None, ["train", "val", "test"],
                  "Predict this split of the run's own data source instead.")
flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number.")
flags.DEFINE_enum("format", "csv", ["csv", "jsonl"], "Output format.")
flags.DEFINE_string("output", "-", "Output file; - for stdout.")


def main(argv):
  cli.run_workdir(argv, FLAGS)
  if FLAGS.split and (FLAGS.text or FLAGS.input):
    cli.fail("--split predicts the run's own data: give it without --text/--input")
  with cli.user_errors():
    # Here, not at the top: jax and flax load in seconds, which `--help` need not.
    from jaxreg import config as config_lib
    from jaxreg.inference import (format_rows, load, predict_items, predict_split,
                                  read_inputs)
    try:
      p = load(FLAGS.workdir, FLAGS.checkpoint)
      if FLAGS.split:
        labels, probs, classes = predict_split(p, FLAGS.split)
        shown = list(range(len(labels)))
      else:
        labels = None
        shown, items = read_inputs(p, FLAGS.text, FLAGS.input)
        probs, classes = predict_items(p, items)
    except ValueError as e:
      raise config_lib.ConfigError(str(e)) from None
    table = format_rows(p.class_names, shown, probs, classes, labels, FLAGS.format)
    if FLAGS.output == "-":
      sys.stdout.write(table)
    else:
      from jaxreg import io
      io.atomic_write(FLAGS.output, table)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
