"""Pretrained encoders by local path: tiny HF models are saved first (no hub), then used as the policy's vision and
text backbones; the saved policy must load without the backbone folders and give identical outputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer, ResNetConfig, ResNetModel, ViTConfig, ViTModel

from storage.features import ACTION, OBS_STATE
from vla_core.policies import load_policy, make_policy

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "pick", "up", "the", "red", "green", "blue", "cube", "grab",
         "block", "lift", "it"]  # fmt: skip


def save_vision(kind: str, path) -> torch.nn.Module:
    torch.manual_seed(1)
    if kind == "resnet":  # conv net: last_hidden_state (B, C, h, w)
        model = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"))
    else:  # ViT: last_hidden_state (B, 1 + 3*3, C) with a CLS token in front
        model = ViTModel(
            ViTConfig(
                image_size=48,
                patch_size=16,
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
            ),  # fmt: skip
            add_pooling_layer=False,
        )
    model.save_pretrained(path)
    return model


def save_text(path) -> torch.nn.Module:
    torch.manual_seed(2)
    model = BertModel(
        BertConfig(
            vocab_size=len(WORDS),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=32,
        ),  # fmt: skip
        add_pooling_layer=False,
    )
    model.save_pretrained(path)
    BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(path)
    return model


@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_local_pretrained_backbones(tmp_path, synth, kind):
    vision = save_vision(kind, tmp_path / "vision")
    text = save_text(tmp_path / "text")
    torch.manual_seed(0)
    policy = make_policy(
        "vla_tiny",
        **synth.tiny_config_kwargs(vision_backbone=str(tmp_path / "vision"), text_backbone=str(tmp_path / "text")),
    )
    identity = {"mean": [0.0] * 3, "std": [1.0] * 3}
    policy.set_normalization({OBS_STATE: identity, ACTION: {"mean": [0.0] * 2, "std": [1.0] * 2}})
    # The pretrained weights are in, not re-initialised by the policy's own init.
    for name, sub, ref in (("vision", policy.vision.model, vision), ("text", policy.text, text)):
        got, want = sub.state_dict(), ref.state_dict()
        assert got.keys() == want.keys(), name
        assert all(torch.equal(got[k], want[k]) for k in want), name
    assert policy.config.vision_backbone_config["model_type"] == kind
    assert policy.config.text_backbone_config["model_type"] == "bert"

    batch = synth.make_batch(np.random.default_rng(0), 2, size=48, chunk=4)
    tasks = ["pick up the red cube", "grab the blue block"]
    policy.train()
    loss, _ = policy(batch)
    loss.backward()  # trains end to end
    policy.eval()
    obs = {k: v for k, v in batch.items() if k.startswith("observation.")}
    before = policy.predict_chunk(obs, tasks)
    assert before.tokens == [["pick", "up", "the", "red", "cube"], ["grab", "the", "blue", "block"]]
    assert before.attention["front"].shape == (2, 3, 3)

    policy.save_pretrained(tmp_path / "policy")
    shutil.rmtree(tmp_path / "vision")  # the saved policy must not need the backbone folders any more
    shutil.rmtree(tmp_path / "text")
    assert (tmp_path / "policy" / "tokenizer_config.json").exists()
    loaded = load_policy(tmp_path / "policy")
    after = loaded.predict_chunk(obs, tasks)
    same = dict(rtol=1e-5, atol=1e-6)  # bit-identical weights; kernels may sum in another order (float rounding)
    torch.testing.assert_close(before.actions, after.actions, **same)
    torch.testing.assert_close(before.uncertainty, after.uncertainty, **same)
    for cam in synth.CAMERAS:
        torch.testing.assert_close(before.attention[cam], after.attention[cam], **same)
        torch.testing.assert_close(before.token_attention[cam], after.token_attention[cam], **same)
