"""Progress: one updating line per stage on a terminal, few plain lines elsewhere."""

from __future__ import annotations

import io

from ess.progress import Progress


def test_terminal_redraws_one_line_per_stage():
    out = io.StringIO()
    progress = Progress(out, tty=True)
    progress.stage("running", 100)
    for done in range(1, 101):
        progress.update(done)
    progress.finish()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.rstrip().endswith("s)")
    assert "\r\x1b[Krunning 100/100" in text


def test_plain_output_prints_start_and_end_not_a_line_per_node():
    out = io.StringIO()
    progress = Progress(out, tty=False, interval=3600)
    progress.stage("ssh ready", 50)
    for done in range(1, 51):
        progress.update(done)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "ssh ready 0/50 ..." and lines[1].startswith("ssh ready 50/50 done (")
    assert len(lines) == 2


def test_relabel_refines_the_open_stage_without_closing_it():
    out = io.StringIO()
    progress = Progress(out, tty=False, interval=3600)
    progress.stage("launching 3")
    progress.relabel("starting 3 local nodes", 3)
    progress.update(3)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert not any("launching 3 done" in line for line in lines)
    assert lines[-1].startswith("starting 3 local nodes 3/3 done")


def test_notes_stay_above_the_progress_line():
    out = io.StringIO()
    progress = Progress(out, tty=True)
    progress.stage("running", 2)
    progress.note("ess: warning: something")
    assert "\r\x1b[Kess: warning: something\n" in out.getvalue()
    assert out.getvalue().endswith("running 0/2")
