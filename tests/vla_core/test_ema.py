"""WeightEMA: the shadow starts at the model, then averages with the warmed-up decay; buffers follow; the state
round-trips."""

import pytest
import torch

from vla_core.ema import WeightEMA


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer("stat", torch.zeros(2))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def test_decay_warms_up_and_is_capped():
    ema = WeightEMA(Tiny(), decay=0.999)
    assert ema.decay_at(0) == 0.0  # the first update copies the model
    assert ema.decay_at(1) == pytest.approx(1 - 2**-0.75)
    assert ema.decay_at(500) == pytest.approx(1 - 501**-0.75)  # ~0.991: a horizon of ~100 steps
    assert ema.decay_at(10**6) == 0.999
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(Tiny(), decay=1.0)


def test_update_averages_parameters_and_copies_buffers():
    torch.manual_seed(0)
    model = Tiny()
    ema = WeightEMA(model, decay=0.999)
    with torch.no_grad():
        model.lin.weight.add_(1.0)
    ema.update()
    assert torch.equal(ema.module.lin.weight, model.lin.weight)  # decay 0 at update 0
    before = ema.module.lin.weight.clone()
    with torch.no_grad():
        model.lin.weight.add_(2.0)
        model.stat.fill_(5.0)
        model.count.fill_(7)
    ema.update()
    d = ema.decay_at(1)
    assert torch.allclose(ema.module.lin.weight, d * before + (1 - d) * model.lin.weight)
    assert torch.equal(ema.module.stat, model.stat) and int(ema.module.count) == 7
    assert not ema.module.lin.weight.requires_grad and not ema.module.training

    other = WeightEMA(Tiny(), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 2 and other.decay == 0.999
    mine, theirs = other.module.state_dict(), ema.module.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
