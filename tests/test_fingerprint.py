"""Functional-copy fingerprints (scoring spec v3): the stored form, the pure comparison, and the
real computation on tiny models (a permuted copy is caught, a differently seeded model is not)."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest
from pydantic import ValidationError

from distil.fingerprint import (MIN_LOGPROB, Fingerprint, FingerprintError, FingerprintInputs,
                                FingerprintOwnerSchema, decode_logprobs, encode_logprobs, parse_fingerprint,
                                parse_fingerprint_inputs)
from distil.scoring.fingerprints import COPY_DISTANCE, DISTANCE_FLOOR, CopyMatch, comparable, copies_of, fingerprint_distance

SHA = "ab" * 32


def fp(values, device="NVIDIA H200", dtype="bfloat16", inputs=SHA) -> Fingerprint:
    return Fingerprint.of(np.asarray(values, dtype=np.float64), inputs, device, dtype, "2.13.0", "5.23.0")


# ---- encoding ----


def test_logprobs_are_stored_as_float16_base64_and_read_back():
    rng = np.random.default_rng(0)
    values = -rng.exponential(3.0, 256)
    text = encode_logprobs(values)
    assert len(text) == 684 and base64.b64decode(text) == values.astype("<f2").tobytes()
    back = decode_logprobs(text)
    assert back.dtype == np.float64 and np.array_equal(back, values.astype(np.float16).astype(np.float64))
    # float16 keeps log-probabilities to 11 significant bits: a relative error under 2^-11
    assert np.all(np.abs(back - values) <= np.abs(values) * 2.0**-11 + 1e-7)
    # clamped to [MIN_LOGPROB, 0]: -inf (an impossible token) and a rounding above 0
    assert list(decode_logprobs(encode_logprobs([-math.inf, -1e6, 1e-7, -0.5]))) == [MIN_LOGPROB, MIN_LOGPROB, 0.0, -0.5]
    with pytest.raises(FingerprintError, match="NaN"):
        encode_logprobs([-1.0, float("nan")])


@pytest.mark.parametrize("bad, message", [
    ("not base64!", "not valid base64"),
    (base64.b64encode(b"abc").decode(), "odd number of bytes"),
    (base64.b64encode(np.array([-1.0, 1.0], "<f2").tobytes()).decode(), "outside"),
    (base64.b64encode(np.array([-1.0, np.nan], "<f2").tobytes()).decode(), "outside"),
    (base64.b64encode(np.array([-1.0, -np.inf], "<f2").tobytes()).decode(), "outside"),
    (12, "base64 string"),
])
def test_bad_logprobs_are_refused_with_the_reason(bad, message):
    with pytest.raises(FingerprintError, match=message):
        decode_logprobs(bad)


def test_a_fingerprint_round_trips_through_json_and_parse_is_strict():
    f = fp(-np.linspace(0.01, 20, 256))
    data = f.to_dict()
    assert set(data) == {"version", "inputs", "device", "dtype", "torch", "transformers", "n", "logprobs"}
    assert parse_fingerprint(data) == f and data["n"] == 256
    for change, message in [
        ({"n": 255}, "holds 256 values, n says 255"),
        ({"n": 10}, "n must be an integer from 64"),
        ({"n": True}, "n must be an integer"),
        ({"version": 2}, "version 2"),
        ({"inputs": "AB" * 32}, "sha256"),
        ({"device": ""}, "must not be empty"),
        ({"dtype": "bf\n16"}, "printable"),
        ({"extra": 1}, "exactly the keys"),
    ]:
        with pytest.raises(FingerprintError, match=message):
            parse_fingerprint({**data, **change})
    with pytest.raises(FingerprintError, match="exactly the keys"):
        parse_fingerprint({k: v for k, v in data.items() if k != "torch"})


def test_the_state_schema_record_refuses_what_parse_refuses():
    record = {"hotkey": "5F" + "a" * 46, "commitment": "ns/model@" + "0" * 40, "commit_block": 120,
              "fingerprint": fp(-np.ones(64)).to_dict()}
    assert FingerprintOwnerSchema.model_validate(record).fingerprint.n == 64
    broken = {**record, "fingerprint": {**record["fingerprint"], "n": 65}}
    with pytest.raises(ValidationError, match="holds 64 values, n says 65"):
        FingerprintOwnerSchema.model_validate(broken)
    with pytest.raises(ValidationError):  # strict: a block number as a string is not coerced
        FingerprintOwnerSchema.model_validate({**record, "commit_block": "120"})
    with pytest.raises(ValidationError, match="commitment|revision"):
        FingerprintOwnerSchema.model_validate({**record, "commitment": "ns/model@main"})


def test_inputs_digest_round_trip_and_limits():
    prompts, conts = [[1, 2, 3], [4, 5]], [list(range(40)), list(range(100, 140))]
    inputs = FingerprintInputs.of(prompts, conts)
    assert inputs.n_positions == 80
    assert inputs.digest == FingerprintInputs.of([[1, 2, 3], [4, 5]], conts).digest
    assert inputs.digest != FingerprintInputs.of([[1, 2, 3], [4, 6]], conts).digest
    data = inputs.to_dict()
    assert parse_fingerprint_inputs(data) == inputs
    with pytest.raises(FingerprintError, match="sha256 does not match"):
        parse_fingerprint_inputs({**data, "prompt_ids": [[1, 2, 3], [4, 6]]})
    with pytest.raises(FingerprintError, match="not a token id"):
        parse_fingerprint_inputs({**data, "prompt_ids": [[1, 2, -3], [4, 5]]})
    with pytest.raises(FingerprintError, match="80|positions"):
        FingerprintInputs.of(prompts, [c[:20] for c in conts])  # 40 positions: too few to compare
    with pytest.raises(FingerprintError, match="2 fingerprint prompts but 1"):
        FingerprintInputs.of(prompts, conts[:1] * 1)


# ---- the pure comparison ----


def test_distance_against_a_float64_reference():
    rng = np.random.default_rng(1)
    t = -rng.exponential(2.0, 256)
    a = np.minimum(t + rng.normal(0, 0.5, 256), 0.0)
    b = np.minimum(t + rng.normal(0, 0.3, 256), 0.0)
    fa, fb, ft = fp(a), fp(b), fp(t)
    va, vb, vt = (x.astype(np.float16).astype(np.float64) for x in (a, b, t))  # what is stored
    rms = lambda x: math.sqrt(math.fsum(x * x) / len(x))  # noqa: E731
    expected = rms(va - vb) / min(rms(va - vt), rms(vb - vt))
    assert fingerprint_distance(fa, fb, ft) == pytest.approx(expected, rel=1e-12)
    assert fingerprint_distance(fb, fa, ft) == pytest.approx(expected, rel=1e-12)  # symmetric
    assert fingerprint_distance(fa, fa, ft) == 0.0
    # unrelated errors of equal size: about √2 apart, far above the threshold
    c = np.minimum(t + rng.normal(0, 0.5, 256), 0.0)
    assert 1.2 < fingerprint_distance(fa, fp(c), ft) < 1.6
    # two models that both equal the teacher: the floor keeps the ratio finite
    near = np.minimum(t + 1e-3, 0.0)
    stored = near.astype(np.float16).astype(np.float64)
    assert rms(stored - vt) < DISTANCE_FLOOR
    assert fingerprint_distance(fp(near), ft, ft) == pytest.approx(rms(stored - vt) / DISTANCE_FLOOR, rel=1e-12)


def test_only_fingerprints_of_the_same_settings_are_compared():
    t = -np.linspace(0.1, 10, 128)
    a = fp(t - 0.5)
    assert comparable(a, fp(t - 0.5)) and comparable(a, Fingerprint.of(t - 0.5, SHA, "NVIDIA H200", "bfloat16", "2.14", "5.24"))
    for other in (fp(t - 0.5, device="cpu"), fp(t - 0.5, dtype="float32"), fp(t - 0.5, inputs="cd" * 32)):
        assert not comparable(a, other)
        with pytest.raises(ValueError, match="never compared"):
            fingerprint_distance(a, other, fp(t))


def test_copies_of_lists_every_match_in_the_given_order_and_skips_incomparable_ones():
    rng = np.random.default_rng(2)
    t = -rng.exponential(2.0, 256)
    original = np.minimum(t + rng.normal(0, 0.5, 256), 0.0)
    independent = np.minimum(t + rng.normal(0, 0.5, 256), 0.0)
    new = fp(np.minimum(original + rng.normal(0, 0.01, 256), 0.0))  # the original up to rounding
    earlier = [("independent", fp(independent)), ("elsewhere", fp(original, device="cpu")),
               ("original", fp(original)), ("second-copy", fp(original))]
    matches = copies_of(new, earlier, fp(t))
    assert [m.owner for m in matches] == ["original", "second-copy"]
    assert all(isinstance(m, CopyMatch) and m.distance < 0.05 for m in matches)
    assert copies_of(new, [], fp(t)) == []
    # the threshold is strict: a distance equal to it is not a copy
    d = fingerprint_distance(new, fp(original), fp(t))
    assert copies_of(new, [("o", fp(original))], fp(t), threshold=d) == []
    assert [m.owner for m in copies_of(new, [("o", fp(original))], fp(t), threshold=d * 1.0001)] == ["o"]
    with pytest.raises(ValueError, match="recompute it"):
        copies_of(new, earlier, fp(t, device="cpu"))
    with pytest.raises(ValueError, match="recompute it"):
        copies_of(new, earlier, fp(t, inputs="cd" * 32))
    # the teacher is fingerprinted in its own dtype: a reference in another dtype is fine
    assert [m.owner for m in copies_of(new, earlier, fp(t, dtype="float32"))] == ["original", "second-copy"]
    with pytest.raises(ValueError, match="threshold"):
        copies_of(new, earlier, fp(t), threshold=0.0)


# ---- the real computation ----


def test_compute_fingerprint_matches_a_float64_log_softmax():
    import torch

    from distil import tiny
    from distil.eval.fingerprint import compute_fingerprint, fingerprint_values

    model = tiny.build_model(tiny.student_config("qwen3"), seed=3, dtype=torch.float32, logit_scale=30.0)
    g = torch.Generator().manual_seed(0)
    inputs = FingerprintInputs.of([torch.randint(0, 256, (6,), generator=g).tolist() for _ in range(2)],
                                  [torch.randint(0, 248_000, (40,), generator=g).tolist() for _ in range(2)])
    values = fingerprint_values(model, inputs)
    expected = []
    with torch.no_grad():
        for p, c in zip(inputs.prompt_ids, inputs.continuation_ids):
            logits = model(input_ids=torch.tensor([list(p) + list(c[:-1])])).logits[0, len(p) - 1 :].double()
            expected.append(torch.log_softmax(logits, -1).gather(1, torch.tensor(c)[:, None])[:, 0])
    assert torch.allclose(values, torch.cat(expected).clamp(min=MIN_LOGPROB), rtol=1e-5, atol=1e-5)
    f = compute_fingerprint(model, inputs)
    assert (f.device, f.dtype, f.inputs, f.n) == ("cpu", "float32", inputs.digest, 80)
    assert np.array_equal(f.values(), values.numpy().astype(np.float16).astype(np.float64))


def test_a_model_with_nan_weights_is_the_models_fault():
    import torch

    from distil import tiny
    from distil.checks.loading import InvalidModel
    from distil.eval.fingerprint import compute_fingerprint

    model = tiny.build_model(tiny.student_config("qwen3"), seed=3, dtype=torch.float32)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    inputs = FingerprintInputs.of([[1, 2, 3]], [list(range(100, 164))])
    with pytest.raises(InvalidModel, match="NaN log-probability"):
        compute_fingerprint(model, inputs)


def test_a_permuted_copy_of_a_tiny_model_is_caught_and_a_differently_seeded_one_is_not():
    import torch

    from distil import tiny
    from distil.eval.fingerprint import build_fingerprint_inputs, compute_fingerprint

    teacher = tiny.build_model(tiny.teacher_config(), seed=0, logit_scale=30.0)  # the demo's teacher (bf16)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 256, (8,), generator=g).tolist() for _ in range(4)]
    inputs, reference = build_fingerprint_inputs(teacher, prompts, max_new_tokens=16)
    assert inputs.n_positions == 64 and reference.dtype == "bfloat16"

    original = tiny.perturbed_copy(teacher, seed=1, scale=0.05)
    permuted = tiny.permuted_copy(original, seed=7)  # experts + router rows, shared-expert neurons
    assert not torch.equal(permuted.model.layers[0].mlp.gate.weight, original.model.layers[0].mlp.gate.weight)
    other = tiny.perturbed_copy(teacher, seed=2, scale=0.05)  # equal quality, made independently
    earlier = [("original", compute_fingerprint(original, inputs))]
    # computed in float32 by default, the model handed back in its own dtype, bit for bit
    assert earlier[0][1].dtype == "float32" and next(original.parameters()).dtype == torch.bfloat16
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(),
                                                 tiny.perturbed_copy(teacher, seed=1, scale=0.05).state_dict().values()))
    caught = copies_of(compute_fingerprint(permuted, inputs), earlier, reference)
    assert [m.owner for m in caught] == ["original"] and caught[0].distance < COPY_DISTANCE / 10
    assert copies_of(compute_fingerprint(other, inputs), earlier, reference) == []
    assert fingerprint_distance(compute_fingerprint(other, inputs), earlier[0][1], reference) > 5 * COPY_DISTANCE


def test_fingerprint_prompts_come_from_the_prompt_source_cut_and_unpredictable(tmp_path):
    import json

    from distil import tiny
    from distil.eval.fingerprint import draw_fingerprint_prompts
    from distil.eval.prompts import JsonlPromptSource
    from distil.eval.spec import EvalSpec
    from distil.fingerprint import FINGERPRINT_PROMPT_TOKENS, FINGERPRINT_PROMPTS

    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"text": f"prompt number {i} " + "x" * (50 * i)}) + "\n" for i in range(40)))
    source, tokenizer, spec = JsonlPromptSource(path), tiny.build_tokenizer(), EvalSpec()
    drawn = draw_fingerprint_prompts(source, tokenizer, spec, seed="ab")
    assert len(drawn) == FINGERPRINT_PROMPTS and max(map(len, drawn)) == FINGERPRINT_PROMPT_TOKENS
    assert drawn == draw_fingerprint_prompts(source, tokenizer, spec, seed="ab")  # a seed decides them
    expected = [tokenizer(p.text, add_special_tokens=False)["input_ids"][:FINGERPRINT_PROMPT_TOKENS]
                for p in source.sample("ab", FINGERPRINT_PROMPTS)]
    assert drawn == expected
    # without a seed, a fresh random one each time: two draws differ (8 of 40 prompts)
    assert draw_fingerprint_prompts(source, tokenizer, spec) != draw_fingerprint_prompts(source, tokenizer, spec)
