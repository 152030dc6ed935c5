"""A job handle's event order: progress replays dropped, the outcome taken once whatever its seq (a
restarted backend numbers a recovered job's outcome afresh), a new epoch a fresh sequence."""

from likeness3d.protocol import messages as M
from likeness3d.protocol.handles import JobHandle


def _progress(seq):
    return M.Progress(job="j", seq=seq, step=seq, total=100)


def test_progress_replays_are_dropped_and_the_outcome_is_taken_once_whatever_its_seq():
    h = JobHandle(client=None, job_id="j")
    assert [h._deliver(_progress(s)) for s in (1, 2, 2, 1, 3)] == [True, True, False, False, True]
    outcome = M.Error(code="internal", message="the server stopped while the job ran", job="j", seq=1)
    assert h._deliver(outcome) and h.final is outcome  # seq 1 after seq 3: a restarted backend's numbering
    assert not h._deliver(M.Result(job="j", seq=9)) and not h._deliver(_progress(10))  # after the outcome: replays
    assert [e.seq for e in h.events(timeout=1)] == [1, 2, 3, 1]


def test_a_new_epoch_is_a_fresh_sequence():
    h = JobHandle(client=None, job_id="j")
    assert h._deliver(_progress(40))
    h._new_sequence()  # the client saw the backend's epoch change
    assert h._deliver(_progress(2)) and not h._deliver(_progress(2)) and h._deliver(_progress(3))
    assert h.last_progress.seq == 3
