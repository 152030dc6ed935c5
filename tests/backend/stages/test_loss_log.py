import math

import pytest
import torch

from likeness3d.backend.stages.loss_log import LossLog


def test_windows_arrive_in_order_and_a_non_finite_loss_stops_the_fit():
    log = LossLog(torch.device("cpu"))
    log.add(torch.tensor([1.0, 2.0, 3.0]), 3)
    log.add(torch.tensor([4.0]), 4)
    log.poll(wait=True)
    assert log.values == [1.0, 2.0, 3.0, 4.0] and log.shown == 4.0
    with pytest.raises(FloatingPointError, match="before step 6"):
        log.add(torch.tensor([5.0, math.nan]), 6)
