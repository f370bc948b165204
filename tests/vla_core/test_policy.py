"""The policy's contract: registry, shapes, loss, save/load, attention maps, execution, inference wrapper.

Every test here uses an untrained or briefly trained tiny model on synthetic tensors (seconds in all).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from storage.features import ACTION, OBS_STATE, image_key
from vla_core.attention import attention_rollout, overlay_heatmap
from vla_core.constants import ACTION_IS_PAD, NORMALIZATION_FILE
from vla_core.inference import Policy
from vla_core.policies import available_policies, get_config_class, load_policy, make_policy
from vla_core.policies.base import PolicyOutput
from vla_core.policies.vla_tiny import CharTokenizer, VLATinyConfig, VLATinyPolicy

CAMERAS = ("front", "wrist")
STATS = {
    OBS_STATE: {"mean": [0.1, -0.2, 0.0], "std": [1.0, 2.0, 0.5]},
    ACTION: {"mean": [0.0, 0.05], "std": [0.6, 0.6]},
}


@pytest.fixture
def tiny_policy(synth):
    """Factory of tiny, untrained, normalised policies in eval mode."""

    def make(seed: int = 0, **overrides) -> VLATinyPolicy:
        torch.manual_seed(seed)
        policy = make_policy("vla_tiny", **synth.tiny_config_kwargs(**overrides))
        policy.set_normalization(STATS)
        return policy.eval()

    return make


def obs_of(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k.startswith("observation.")}


@pytest.mark.parametrize("name", available_policies())
def test_registry_builds_every_policy(name, synth):
    config_class = get_config_class(name)
    policy = make_policy(config_class(**synth.tiny_config_kwargs()))
    assert policy.config.model_type == name
    assert isinstance(policy, torch.nn.Module)
    with pytest.raises(KeyError):
        get_config_class("no_such_policy")


def test_default_config_size():
    """The default is in the 1-5 M parameter range the 2-core machine trains in minutes."""
    torch.manual_seed(0)
    policy = make_policy()
    n = sum(p.numel() for p in policy.parameters())
    assert 1_000_000 <= n <= 5_000_000, n
    c = policy.config
    assert c.cameras == ("front", "wrist") and c.image_size == 96 and c.chunk_size == 10
    assert c.state_dim == 7 and c.action_dim == 7 and policy.grid == 6


def test_config_round_trip(tmp_path, synth):
    cfg = VLATinyConfig(**synth.tiny_config_kwargs(chunk_size=6))
    cfg.save_pretrained(tmp_path)
    back = VLATinyConfig.from_pretrained(tmp_path)
    assert back.cameras == CAMERAS and isinstance(back.cameras, tuple)
    assert back.chunk_size == 6 and back.to_dict() == cfg.to_dict()
    with pytest.raises(ValueError):
        VLATinyConfig(d_model=30, n_heads=4)


def test_char_tokenizer_round_trip(tmp_path):
    tok = CharTokenizer()
    ids = tok("Pick up the RED cube!")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "pick up the red cube!"
    assert tok.convert_tokens_to_ids("é") == tok.unk_token_id  # no OOV failure, just [UNK]
    tok.save_pretrained(tmp_path)
    back = CharTokenizer.from_pretrained(tmp_path)
    assert back.get_vocab() == tok.get_vocab() and back("red")["input_ids"] == tok("red")["input_ids"]


def test_forward_loss_drops_in_a_few_steps(synth, tiny_policy):
    policy = tiny_policy()
    policy.train()
    rng = np.random.default_rng(0)
    batch = synth.make_batch(rng, 16, size=48, chunk=4)
    opt = torch.optim.AdamW(policy.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):  # one fixed batch: the loss must fall
        loss, info = policy(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert set(info) >= {"loss", "l1", "l1_0", "l1_1", "spread"}
    assert all(isinstance(v, float) for v in info.values())
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses


def test_padded_steps_do_not_count(synth, tiny_policy):
    policy = tiny_policy()
    batch = synth.make_batch(np.random.default_rng(1), 4, size=48, chunk=4)
    batch[ACTION_IS_PAD] = torch.tensor([[False, False, True, True]] * 4)
    loss_a, _ = policy(batch)
    batch[ACTION] = batch[ACTION].clone()
    batch[ACTION][:, 2:] += 100.0  # garbage past the episode end
    loss_b, _ = policy(batch)
    assert torch.equal(loss_a, loss_b)


def test_predict_chunk_shapes_and_ranges(synth, tiny_policy):
    policy = tiny_policy()
    batch = synth.make_batch(np.random.default_rng(2), 3, size=48, chunk=4)
    # Any size and layout: (B, H, W, 3) numpy at 80 px for one camera, (B, 3, H, W) torch at 48 px for the other.
    obs = {
        image_key("front"): np.ascontiguousarray(
            torch.nn.functional.interpolate(batch[image_key("front")].float(), size=80)
            .round()
            .clamp(0, 255)
            .byte()
            .permute(0, 2, 3, 1)
            .numpy()
        ),
        image_key("wrist"): batch[image_key("wrist")],
        OBS_STATE: batch[OBS_STATE].numpy(),
    }
    tasks = ["pick up the red cube", "grab the blue block", "lift it"]
    out = policy.predict_chunk(obs, tasks)
    B, T, A, g, K = 3, 4, 2, policy.grid, policy.config.uncertainty_samples
    assert g == 3
    assert out.actions.shape == (B, T, A) and out.actions.dtype == torch.float32
    assert out.action_std.shape == (B, T, A) and bool((out.action_std >= 0).all())
    assert out.uncertainty.shape == (B,) and bool((out.uncertainty > 0).all())
    assert out.action_samples.shape == (K, B, T, A)
    assert out.tokens == [["pick", "up", "the", "red", "cube"], ["grab", "the", "blue", "block"], ["lift", "it"]]
    for cam in CAMERAS:
        for maps in (out.attention, out.attention_rollout):
            m = maps[cam]
            assert m.shape == (B, g, g)
            assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
            assert torch.allclose(m.flatten(1).amax(1), torch.ones(B))  # normalised per map
        tok = out.token_attention[cam]
        assert tok.shape == (B, 5, g, g) and float(tok.min()) >= 0 and float(tok.max()) <= 1
        assert float(tok[2, 2:].abs().sum()) == 0.0  # rows past "lift it" are empty
        assert torch.allclose(tok[0].flatten(1).amax(1), torch.ones(5))
        kp = out.keypoint_attention[cam]  # spatial-softmax keypoints on the 48 / 8 = 6 x 6 conv map
        assert kp.shape == (B, 6, 6) and float(kp.min()) >= 0.0
        assert torch.allclose(kp.flatten(1).amax(1), torch.ones(B))
    share = sum(out.camera_weight[c] for c in CAMERAS)
    assert torch.allclose(share, torch.ones(B), atol=1e-5)
    assert tiny_policy(spatial_keypoints=0).predict_chunk(obs, tasks).keypoint_attention == {}
    # The spread is the std of the samples, in raw units; the mean is the ensemble mean.
    assert torch.allclose(out.action_samples.mean(0), out.actions, atol=1e-5)
    assert torch.allclose(out.action_samples.std(0, unbiased=False), out.action_std, atol=1e-5)
    npo = out.numpy()
    assert isinstance(npo.actions, np.ndarray) and isinstance(npo.attention["front"], np.ndarray)


def test_predict_returns_raw_units(synth, tiny_policy):
    """Actions come back denormalised: moving the stored action mean moves every prediction by the same amount."""
    policy = tiny_policy()
    obs = obs_of(synth.make_batch(np.random.default_rng(3), 2, size=48, chunk=4))
    a = policy.predict_chunk(obs, ["pick up the red cube"] * 2).actions
    shifted = {**STATS, ACTION: {"mean": [10.0, -5.0], "std": STATS[ACTION]["std"]}}
    policy.set_normalization(shifted)
    b = policy.predict_chunk(obs, ["pick up the red cube"] * 2).actions
    assert torch.allclose(b - a, torch.tensor([10.0, -5.05]).expand_as(a), atol=1e-4)
    with pytest.raises(ValueError):
        policy.set_normalization({**STATS, ACTION: {"mean": [0.0], "std": [1.0]}})


def test_predict_keeps_training_mode_and_is_deterministic(synth, tiny_policy):
    policy = tiny_policy(dropout=0.2)
    policy.train()
    obs = obs_of(synth.make_batch(np.random.default_rng(4), 2, size=48, chunk=4))
    a = policy.predict_chunk(obs, ["grab the green block"] * 2)
    b = policy.predict_chunk(obs, ["grab the green block"] * 2)
    assert policy.training  # restored
    assert torch.equal(a.actions, b.actions)  # dropout was off


def test_save_load_identical(tmp_path, synth, tiny_policy):
    policy = tiny_policy()
    synth.train_tiny(policy, steps=5)  # BatchNorm running stats and weights move away from init
    policy.eval()
    policy.config.uncertainty_threshold = 0.25
    policy.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.json", "tokenizer_config.json", NORMALIZATION_FILE} <= names
    assert json.loads((tmp_path / NORMALIZATION_FILE).read_text())[ACTION]["mean"] == pytest.approx([0.0, 0.05])

    loaded = VLATinyPolicy.from_pretrained(tmp_path)
    assert not loaded.training and loaded.config.uncertainty_threshold == 0.25
    assert type(load_policy(tmp_path)) is VLATinyPolicy
    sd_a, sd_b = policy.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)

    batch = synth.make_batch(np.random.default_rng(5), 3, size=48, chunk=4)
    tasks = ["pick up the red cube", "grab the blue block", "lift the green cube"]
    a, b = policy.predict_chunk(obs_of(batch), tasks), loaded.predict_chunk(obs_of(batch), tasks)
    # The weights are bit-identical (above); outputs are compared to float32 rounding, because the loaded tensors
    # sit at other addresses and oneDNN may pick a kernel with another summation order (seen: 2e-7 apart).
    same = dict(rtol=1e-5, atol=1e-6)
    for name in ("actions", "action_std", "uncertainty", "action_samples"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), **same, msg=name)
    for cam in CAMERAS:
        torch.testing.assert_close(a.attention[cam], b.attention[cam], **same)
        torch.testing.assert_close(a.attention_rollout[cam], b.attention_rollout[cam], **same)
        torch.testing.assert_close(a.token_attention[cam], b.token_attention[cam], **same)
    torch.testing.assert_close(policy(batch)[0], loaded(batch)[0], **same)


def test_select_action_temporal_ensembling(synth, tiny_policy):
    policy = tiny_policy(temporal_ensemble_coeff=0.0)  # uniform weights: easy to check by hand
    rng = np.random.default_rng(6)
    frames = [obs_of(synth.make_batch(rng, 1, size=48, chunk=4)) for _ in range(6)]
    policy.reset()
    got, chunks = [], []
    for t, obs in enumerate(frames):
        got.append(policy.select_action(obs, "pick up the red cube"))
        chunks.append(policy.last_output.actions[0])
        live = [chunks[s][t - s] for s in range(max(0, t - 3), t + 1)]  # chunks still covering step t
        np.testing.assert_allclose(got[-1], np.mean(live, 0), rtol=1e-5, atol=1e-6)
    assert got[0].shape == (2,) and got[0].dtype == np.float32
    policy.reset()
    np.testing.assert_allclose(policy.select_action(frames[3], "pick up the red cube"), chunks[3][0], atol=1e-6)

    open_loop = tiny_policy(temporal_ensemble_coeff=None, n_action_steps=3)
    open_loop.reset()
    first = open_loop.select_action(frames[0], "grab the blue block")
    chunk = open_loop.last_output.actions[0]
    rest = [open_loop.select_action(frames[i], "grab the blue block") for i in (1, 2)]
    np.testing.assert_allclose(np.stack([first, *rest]), chunk[:3], atol=1e-6)


def test_inference_wrapper(tmp_path, synth, tiny_policy):
    policy = tiny_policy()
    policy.save_pretrained(tmp_path)
    (tmp_path / "training_metadata.json").write_text(json.dumps({"steps": 5}))
    loaded = Policy.load(tmp_path)
    assert loaded.metadata == {"steps": 5} and loaded.cameras == CAMERAS and loaded.uncertainty_threshold is None

    class Observation:  # backend.robot.Observation's shape: (H, W, 3) uint8 frames + (D,) state
        def __init__(self, images, state):
            self.images, self.state, self.timestamp = images, state, 0.0

    batch = synth.make_batch(np.random.default_rng(7), 1, size=48, chunk=4)
    frames = {cam: batch[image_key(cam)][0].permute(1, 2, 0).numpy() for cam in CAMERAS}
    out = loaded.predict(Observation(frames, batch[OBS_STATE][0].numpy()), "pick up the red cube")
    assert isinstance(out, PolicyOutput) and out.actions.shape == (1, 4, 2) and out.uncertainty.shape == (1,)
    ref = policy.predict_chunk(obs_of(batch), ["pick up the red cube"])
    np.testing.assert_allclose(out.actions, ref.actions.numpy(), atol=1e-5)  # HWC vs CHW memory layout
    loaded.reset()
    act = loaded.select_action({"images": frames, "state": batch[OBS_STATE][0].numpy()}, "pick up the red cube")
    assert act.shape == (2,) and loaded.last_output is not None


def test_overlay_heatmap():
    frame = np.zeros((40, 60, 3), dtype=np.uint8)
    heat = np.zeros((3, 3), dtype=np.float32)
    heat[0, 0] = 1.0
    out = overlay_heatmap(frame, heat, cmap="jet", alpha=0.5)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] > out[0, 0, 2] and out[-1, -1, 2] > out[-1, -1, 0]  # jet: hot corner red, cold corner blue
    assert np.array_equal(overlay_heatmap(frame, heat, alpha=0.0), frame)
    from matplotlib import colormaps

    full = overlay_heatmap(frame, np.ones((2, 2)), cmap="viridis", alpha=1.0)
    expect = np.rint(np.asarray(colormaps["viridis"](1.0)[:3]) * 255).astype(np.uint8)
    assert np.array_equal(full[5, 5], expect)


def test_attention_rollout_identity_and_rows():
    B, H, N = 2, 3, 5
    a = torch.softmax(torch.randn(B, H, N, N), -1)
    r = attention_rollout([a, a])
    assert r.shape == (B, N, N) and torch.allclose(r.sum(-1), torch.ones(B, N), atol=1e-5)
    eye = torch.eye(N).expand(B, H, N, N)
    assert torch.allclose(attention_rollout([eye]), torch.eye(N).expand(B, N, N))


def test_relative_actions_are_learned_as_deltas_and_returned_absolute(synth, tiny_policy):
    """With relative_action_dims=n the loss compares against action - state on the first n dims, and predictions
    come back absolute: the same network output shifted by the state."""
    # state_input="none": switching relative_action_dims below must not change what the network sees.
    policy = tiny_policy(relative_action_dims=1, state_input="none").eval()
    batch = synth.make_batch(np.random.default_rng(7), 4, size=48, chunk=4)
    state = batch[OBS_STATE]
    shifted = {**obs_of(batch), OBS_STATE: state}
    a = policy.predict_chunk(obs_of(batch), ["pick up the red cube"] * 4)
    policy.config.relative_action_dims = 0
    b = policy.predict_chunk(shifted, ["pick up the red cube"] * 4)
    torch.testing.assert_close(a.actions[..., 0], b.actions[..., 0] + state[:, None, 0])  # dim 0 relative
    torch.testing.assert_close(a.actions[..., 1], b.actions[..., 1])  # dim 1 absolute
    torch.testing.assert_close(a.action_std, b.action_std)  # a spread is the same in both frames
    # The loss target: an action equal to the state's first dim is a zero delta.
    policy.config.relative_action_dims = 1
    target = policy._to_relative(batch[ACTION], state)
    torch.testing.assert_close(target[..., 0], batch[ACTION][..., 0] - state[:, None, 0])
    torch.testing.assert_close(policy._to_absolute(target, state), batch[ACTION])


def test_state_input_none_leaves_the_state_only_as_the_relative_anchor(synth, tiny_policy):
    """state_input="none": the network never sees the proprioception, so changing the state shifts a relative
    prediction by exactly the state change and leaves an absolute one untouched."""
    policy = tiny_policy(state_input="none", relative_action_dims=1).eval()
    batch = synth.make_batch(np.random.default_rng(8), 3, size=48, chunk=4)
    obs = obs_of(batch)
    moved = {**obs, OBS_STATE: obs[OBS_STATE] + 0.5}
    a = policy.predict_chunk(obs, ["pick up the red cube"] * 3).actions
    b = policy.predict_chunk(moved, ["pick up the red cube"] * 3).actions
    torch.testing.assert_close(b[..., 0], a[..., 0] + 0.5)
    torch.testing.assert_close(b[..., 1], a[..., 1])
    with_state = tiny_policy(state_input="all", relative_action_dims=0).eval()
    c = with_state.predict_chunk(obs, ["pick up the red cube"] * 3).actions
    d = with_state.predict_chunk(moved, ["pick up the red cube"] * 3).actions
    assert not torch.allclose(c, d)  # the test can fail: with the state fed in, it matters


def test_state_input_unanchored_hides_only_the_relative_anchors(tiny_policy):
    assert tiny_policy(relative_action_dims=1).state_input_mask.tolist() == [0.0, 1.0, 1.0]  # default "unanchored"
    assert tiny_policy(relative_action_dims=0).state_input_mask.tolist() == [1.0, 1.0, 1.0]
    assert tiny_policy(state_input="none").state_input_mask.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="state_input must be"):
        tiny_policy(state_input="some")
