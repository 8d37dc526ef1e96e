"""TransformersEngine: real sampling, logprob convention, stops, batching, interruptible weight updates."""

from __future__ import annotations

import asyncio

import pytest
import torch

from asearcher.llm.engine import GenerationRequest, SamplingParams
from asearcher.llm.sampling import token_logprobs
from asearcher.llm.transformers_engine import TransformersEngine

PROMPTS = ["The City Bank of New York was founded", "Hello", "<think> who is the president </think>\n<search>",
           "Zürich 東京 naïve"]  # fmt: skip


def run(coro):
    return asyncio.run(coro)


async def wait_until(pred, timeout=60.0):
    """Poll `pred` (fails instead of hanging when the engine never gets there)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.0005)


def enc(engine, text):
    return engine.tokenizer.encode(text, add_special_tokens=False)


def gen(engine, ids, **kw):
    return run(engine.agenerate(GenerationRequest(ids, SamplingParams(**kw))))


def manual_logprobs(model, prompt, out, temperature):
    with torch.no_grad():
        logits = model(torch.tensor([prompt + out])).logits[0, len(prompt) - 1 : -1]
    return token_logprobs(logits, torch.tensor(out), temperature)


def test_seeded_sampling_is_reproducible(tiny_engine):
    ids = enc(tiny_engine, PROMPTS[0])
    a = gen(tiny_engine, ids, max_new_tokens=24, seed=7, temperature=1.0)
    b = gen(tiny_engine, ids, max_new_tokens=24, seed=7, temperature=1.0)
    c = gen(tiny_engine, ids, max_new_tokens=24, seed=8, temperature=1.0)
    assert a.output_ids == b.output_ids and a.output_logprobs == b.output_logprobs
    assert a.output_ids != c.output_ids
    assert a.output_versions == [0] * len(a.output_ids)
    assert a.text == tiny_engine.tokenizer.decode(a.output_ids, skip_special_tokens=True)


@pytest.mark.parametrize("kw", [dict(greedy=True), dict(temperature=0.7, top_p=0.9, seed=3),
                                dict(temperature=1.3, top_k=20, seed=4)])  # fmt: skip
def test_logprobs_equal_a_manual_forward_pass(tiny_engine, kw):
    prompt = enc(tiny_engine, PROMPTS[2])
    res = gen(tiny_engine, prompt, max_new_tokens=16, **kw)
    temperature = 1.0 if kw.get("greedy") else kw["temperature"]
    expected = manual_logprobs(tiny_engine.model, prompt, res.output_ids, temperature)
    assert torch.allclose(torch.tensor(res.output_logprobs), expected, atol=1e-4)
    if kw.get("top_k"):  # sampled tokens always come from the truncated distribution
        with torch.no_grad():
            logits = tiny_engine.model(torch.tensor([prompt + res.output_ids])).logits[
                0, len(prompt) - 1 : -1
            ]
        for t, row in zip(res.output_ids, logits, strict=True):
            assert t in torch.topk(row, kw["top_k"]).indices.tolist()


def test_stop_strings_stop_token_ids_and_max_tokens(tiny_engine):
    tok = tiny_engine.tokenizer
    prompt = enc(tiny_engine, PROMPTS[0])
    base = gen(tiny_engine, prompt, max_new_tokens=12, greedy=True)
    assert base.finish_reason == "length" and len(base.output_ids) == 12

    # a stop string the model really produces: the text of its 4th token (stripped of spaces)
    stop = tok.decode([base.output_ids[3]]).strip() or tok.decode([base.output_ids[3]])
    k = next(i for i in range(1, 13) if stop in tok.decode(base.output_ids[:i]))
    res = gen(tiny_engine, prompt, max_new_tokens=12, greedy=True, stop=[stop, "never-produced"])
    assert res.finish_reason == "stop" and res.stop_string == stop
    assert res.output_ids == base.output_ids[:k]
    assert res.text.endswith(stop)

    stop_id = base.output_ids[5]
    j = base.output_ids.index(stop_id)
    res = gen(tiny_engine, prompt, max_new_tokens=12, greedy=True, stop_token_ids=[stop_id])
    assert res.finish_reason == "stop" and res.stop_string is None
    assert res.output_ids == base.output_ids[: j + 1]


def test_concurrent_batch_equals_one_by_one(tiny_engine):
    reqs = [GenerationRequest(enc(tiny_engine, p), SamplingParams(max_new_tokens=20 + 3 * i, greedy=True))
            for i, p in enumerate(PROMPTS)]  # fmt: skip
    reqs += [GenerationRequest(enc(tiny_engine, p), SamplingParams(max_new_tokens=15, seed=11 + i))
             for i, p in enumerate(PROMPTS)]  # fmt: skip
    alone = [run(tiny_engine.agenerate(r)) for r in reqs]

    async def together():
        return await asyncio.gather(*(tiny_engine.agenerate(r) for r in reqs))

    batched = run(together())
    for a, b in zip(alone, batched, strict=True):
        assert a.output_ids == b.output_ids
        assert a.finish_reason == b.finish_reason
        assert torch.allclose(torch.tensor(a.output_logprobs), torch.tensor(b.output_logprobs), atol=1e-4)


def test_bad_requests_are_clear_errors(tiny_engine):
    with pytest.raises(ValueError, match="empty"):
        gen(tiny_engine, [], max_new_tokens=2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        gen(tiny_engine, [10**7], max_new_tokens=2)
    with pytest.raises(ValueError, match="top_p"):
        gen(tiny_engine, [1, 2], max_new_tokens=2, top_p=0)
    with pytest.raises(ValueError, match="context"):
        gen(tiny_engine, [1] * 5000, max_new_tokens=2)


def perturbed(model, seed=5, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}


def test_update_weights_mid_generation_continues_under_new_weights(tiny_model_dir):
    engine = TransformersEngine(str(tiny_model_dir))
    prompt = enc(engine, PROMPTS[0])
    new_sd = perturbed(engine.model)
    n = 60

    def pause_at_3_tokens(
        e,
    ):  # runs in the worker thread right after a step: a deterministic interruption point
        if any(x["output_tokens"] >= 3 for x in e.inflight()):
            e.on_step = None
            e.request_pause()

    async def scenario():
        engine.on_step = pause_at_3_tokens
        task = asyncio.create_task(
            engine.agenerate(GenerationRequest(prompt, SamplingParams(n, greedy=True)))
        )
        await wait_until(lambda: engine.on_step is None)
        await engine.pause()
        done_before = engine.inflight()[0]["output_tokens"]
        await engine.update_weights(new_sd, version=1)
        await engine.resume()
        return done_before, await task

    try:
        done_before, res = run(scenario())
        assert engine.version == 1
        m = len(res.output_ids)  # the new weights may end with eos before n tokens
        assert done_before == 3 and done_before < m <= n
        assert res.output_versions == [0] * done_before + [1] * (m - done_before)
        # the continuation is exactly what a fresh greedy generation under the new weights gives from that prefix
        fresh = gen(
            engine, prompt + res.output_ids[:done_before], max_new_tokens=n - done_before, greedy=True
        )
        assert fresh.output_ids == res.output_ids[done_before:]
        assert fresh.finish_reason == res.finish_reason
        assert fresh.output_versions == [1] * (m - done_before)
        # and the behaviour logprobs of every token match a forward pass under the weights that produced it
        lp_new = manual_logprobs(engine.model, prompt, res.output_ids, 1.0)
        assert torch.allclose(
            torch.tensor(res.output_logprobs[done_before:]), lp_new[done_before:], atol=1e-4
        )
    finally:
        run(engine.aclose())


def test_update_weights_from_hf_dir_and_bad_update(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    engine = TransformersEngine(str(tiny_model_dir))
    try:
        other = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        other.load_state_dict(perturbed(other, seed=9))
        other.save_pretrained(tmp_path / "v3")
        run(engine.update_weights(str(tmp_path / "v3"), version=3))
        assert engine.version == 3
        for k, v in other.state_dict().items():
            assert torch.equal(engine.model.state_dict()[k], v), k

        with pytest.raises(ValueError, match="missing"):
            run(
                engine.update_weights(
                    {"model.embed_tokens.weight": other.model.embed_tokens.weight}, version=4
                )
            )
        with pytest.raises(FileNotFoundError):
            run(engine.update_weights(str(tmp_path / "nope"), version=4))
        assert engine.version == 3  # a failed update leaves weights and version alone
        res = gen(engine, [1, 2, 3], max_new_tokens=3, greedy=True)
        assert res.output_versions == [3, 3, 3]
    finally:
        run(engine.aclose())


def test_aclose_aborts_waiting_requests(tiny_model_dir):
    engine = TransformersEngine(str(tiny_model_dir))

    async def scenario():
        await engine.pause()
        task = asyncio.create_task(
            engine.agenerate(GenerationRequest([1, 2, 3], SamplingParams(8, greedy=True)))
        )
        await asyncio.sleep(0.01)
        await engine.aclose()
        return await task

    res = run(scenario())
    assert res.finish_reason == "abort" and res.output_ids == []
    with pytest.raises(RuntimeError, match="closed"):
        gen(engine, [1, 2], max_new_tokens=2)


def test_cancelled_request_leaves_the_batch_consistent(tiny_engine):
    a_ids, b_ids = enc(tiny_engine, PROMPTS[0]), enc(tiny_engine, PROMPTS[1])
    alone = gen(tiny_engine, b_ids, max_new_tokens=40, greedy=True)

    async def scenario():
        a = asyncio.create_task(
            tiny_engine.agenerate(GenerationRequest(a_ids, SamplingParams(400, greedy=True)))
        )
        b = asyncio.create_task(
            tiny_engine.agenerate(GenerationRequest(b_ids, SamplingParams(40, greedy=True)))
        )
        await wait_until(lambda: any(x["output_tokens"] >= 2 for x in tiny_engine.inflight()))
        a.cancel()
        res = await b
        with pytest.raises(asyncio.CancelledError):
            await a
        return res

    assert run(scenario()).output_ids == alone.output_ids


def test_requests_joining_a_running_batch_equal_one_by_one(tiny_engine):
    """Newcomers are prefilled alone and their KV rows merged into the running cache: results must not change."""
    reqs = [
        GenerationRequest(enc(tiny_engine, PROMPTS[0]), SamplingParams(max_new_tokens=300, greedy=True)),
        GenerationRequest(enc(tiny_engine, PROMPTS[3] * 3), SamplingParams(max_new_tokens=20, greedy=True)),
        GenerationRequest(enc(tiny_engine, PROMPTS[1]), SamplingParams(max_new_tokens=20, seed=2)),
    ]
    alone = [run(tiny_engine.agenerate(r)) for r in reqs]

    async def staggered():
        first = asyncio.create_task(tiny_engine.agenerate(reqs[0]))
        await wait_until(lambda: any(x["output_tokens"] >= 3 for x in tiny_engine.inflight()))
        second = asyncio.create_task(tiny_engine.agenerate(reqs[1]))  # longer prompt than the running row
        await wait_until(lambda: len(tiny_engine.inflight()) >= 2)
        third = asyncio.create_task(tiny_engine.agenerate(reqs[2]))  # shorter than the grown cache
        return await asyncio.gather(first, second, third)

    for a, b in zip(alone, run(staggered()), strict=True):
        assert a.output_ids == b.output_ids
        assert torch.allclose(torch.tensor(a.output_logprobs), torch.tensor(b.output_logprobs), atol=1e-4)


def agent_turns(engine, prompts, turns=3):
    """Each prompt starts a conversation of `turns` calls; every call's prompt is the previous prompt + its output
    + a tool-result stand-in (as the agents build them). All conversations run concurrently. Returns the results
    per conversation."""
    extra = enc(engine, "\n\n<information> Doc 1: the bank was founded in 1812. </information>\n\n")

    async def one(i, ids):
        out = []
        for _ in range(turns):
            res = await engine.agenerate(
                GenerationRequest(ids, SamplingParams(max_new_tokens=6 + i, greedy=True))
            )
            out.append(res)
            ids = ids + res.output_ids + extra
        return out

    async def all_of():
        return await asyncio.gather(*(one(i, enc(engine, p)) for i, p in enumerate(prompts)))

    return run(all_of())


def test_prefix_cache_turns_equal_an_engine_without_it(tiny_model_dir):
    warm = TransformersEngine(str(tiny_model_dir), prefix_cache_tokens=8192)
    cold = TransformersEngine(str(tiny_model_dir))
    try:
        a, b = agent_turns(warm, PROMPTS), agent_turns(cold, PROMPTS)
        for conv_a, conv_b in zip(a, b, strict=True):
            for x, y in zip(conv_a, conv_b, strict=True):
                assert x.output_ids == y.output_ids and x.finish_reason == y.finish_reason
                assert torch.allclose(
                    torch.tensor(x.output_logprobs), torch.tensor(y.output_logprobs), atol=1e-4
                )
        st = warm.prefix_cache_stats()
        # every later turn extends its conversation's previous call, which is kept when it covers at least the
        # cache's minimum (16 tokens: the short prompts' first calls are not)
        covered = [
            len(enc(warm, p)) + len(conv[0].output_ids) - 1 for p, conv in zip(PROMPTS, a, strict=True)
        ]
        assert st["hits"] == sum(1 if n < 16 else 2 for n in covered), (st, covered)
        assert st["hits"] >= len(PROMPTS)
        assert st["reused_tokens"] > 0 and cold.prefix_cache_stats()["hits"] == 0
    finally:
        run(warm.aclose())
        run(cold.aclose())


def test_prefix_cache_is_cleared_by_a_weight_update(tiny_model_dir):
    engine = TransformersEngine(str(tiny_model_dir), prefix_cache_tokens=8192)
    try:
        ids = enc(engine, PROMPTS[0] * 3)
        first = gen(engine, ids, max_new_tokens=8, greedy=True)
        assert engine.prefix_cache_stats()["entries"] == 1
        run(engine.update_weights(perturbed(engine.model), version=1))
        assert engine.prefix_cache_stats()["entries"] == 0
        nxt = ids + first.output_ids + enc(engine, " and then")
        res = gen(engine, nxt, max_new_tokens=8, greedy=True)
        assert engine.prefix_cache_stats()["hits"] == 0  # KV of version 0 is never reused under version 1
        assert res.output_versions == [1] * len(res.output_ids)
        expected = manual_logprobs(engine.model, nxt, res.output_ids, 1.0)
        assert torch.allclose(torch.tensor(res.output_logprobs), expected, atol=1e-4)
    finally:
        run(engine.aclose())
