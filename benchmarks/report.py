"""Prints a Markdown table of a run's results.jsonl: labels, test accuracy, time, throughput.

    python -m benchmarks.report runs/mnist
"""

import json
import os
import sys


def read_records(run_dir):
    with open(os.path.join(run_dir, "results.jsonl"), encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def markdown_table(records):
    lines = ["| cycle | labels | test accuracy | cycle seconds | train steps/s | train images/s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for record in records:
        steps_per_second = record["train_steps"] / record["train_seconds"]
        lines.append(f"| {record['cycle']} | {record['num_labeled']} | {100 * record['test_accuracy']:.2f} % | "
                     f"{record['seconds']:.0f} | {steps_per_second:.2f} | {record['train_images_per_second']:.0f} |")
    total = sum(record["seconds"] for record in records)
    lines.append("")
    lines.append(f"Total wall time of the cycles: {total:.0f} s ({total / 60:.1f} min).")
    return "\n".join(lines)


def main(argv):
    if len(argv) != 2:
        print("usage: python -m benchmarks.report RUN_DIR", file=sys.stderr)
        return 2
    print(markdown_table(read_records(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
