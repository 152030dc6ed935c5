import math

import pytest
import torch

from likeness3d.backend.stages.common.loss_log import LossLog


def test_windows_arrive_in_order_and_a_non_finite_loss_stops_the_fit():
    log = LossLog(torch.device("cpu"))
    log.add(torch.tensor([1.0, 2.0, 3.0]), 3)
    log.add(torch.tensor([4.0]), 4)
    log.poll(wait=True)
    assert log.values == [1.0, 2.0, 3.0, 4.0] and log.shown == 4.0
    with pytest.raises(FloatingPointError, match="before step 6"):
        log.add(torch.tensor([5.0, math.nan]), 6)


def test_record_sends_windows_and_waits_at_the_last_step():
    log = LossLog(torch.device("cpu"), "refine loss")
    assert math.isnan(log.latest_value(1))
    for step in range(1, 6):
        log.record(torch.tensor([float(step), 10.0 * step]), step, 5, window=2)
    assert log.values == [1.0, 2.0, 3.0, 4.0, 5.0] and log.latest_value(1) == 50.0 and log.shown == 5.0


def test_a_cpu_log_reads_every_step_and_text_never_shows_a_placeholder():
    log = LossLog(torch.device("cpu"), "coarse loss")
    assert log.latest_text(1, "reference L1") == "reference L1 pending"
    log.record(torch.tensor([3.0, 0.25]), 1, 100, window=25)
    assert log.latest_text(1, "reference L1") == "reference L1 0.2500" and log.values == [3.0]
