"""Progress away from a terminal: plain lines, every few seconds and at the end, never one per step."""

from aral_tf.progress import Progress


def test_a_log_gets_one_line_at_the_end_of_a_quick_loop(capsys):
    progress = Progress(30, "step", interval=3600)
    for step in range(1, 31):
        progress.update(step, [("loss", float(step))])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("  step 30/30, ")
    assert lines[0].endswith(" - loss: 15.5000")                   # the mean of 1..30


def test_a_line_each_interval_with_the_means_since_the_previous_one(capsys):
    progress = Progress(4, "image", interval=0, start=2)
    progress.update(3, [("loss", 1.0)])
    progress.update(4, [("loss", 3.0)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == ["  image 3/4", "  image 4/4"]
    assert lines[1].endswith(" - loss: 3.0000")


def test_nothing_without_verbose(capsys):
    progress = Progress(2, "step", verbose=False, interval=0)
    progress.update(1)
    progress.update(2)
    assert capsys.readouterr().out == ""
