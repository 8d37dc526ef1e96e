"""vLLM engine: request/result conversion and abort-and-continue weight updates with doubles; GPU test if possible."""

from __future__ import annotations

import asyncio
import importlib.util
import math
from types import SimpleNamespace

import pytest

from asearcher.config import EngineConfig
from asearcher.errors import UserFacingError
from asearcher.llm.engine import SamplingParams
from asearcher.llm.factory import make_engine
from asearcher.llm.vllm_engine import (
    Continuation,
    Segment,
    VLLMEngineActorImpl,
    segment_from_output,
    to_vllm_sampling_kwargs,
)

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_sampling_conversion():
    s = SamplingParams(max_new_tokens=7, temperature=0.6, top_p=0.95, top_k=20, stop=["</search>"],
                       stop_token_ids=[3], seed=11)  # fmt: skip
    kw = to_vllm_sampling_kwargs(s)
    assert kw["max_tokens"] == 7 and kw["temperature"] == 0.6 and kw["top_p"] == 0.95 and kw["top_k"] == 20
    assert kw["stop"] == ["</search>"] and kw["stop_token_ids"] == [3] and kw["seed"] == 11
    assert kw["include_stop_str_in_output"] is True and kw["logprobs"] == 0 and kw["n"] == 1
    g = to_vllm_sampling_kwargs(SamplingParams(greedy=True, temperature=0.9, top_k=5), max_tokens=3, seed=99)
    assert g["temperature"] == 0.0 and g["top_k"] == -1 and g["top_p"] == 1.0 and g["max_tokens"] == 3
    assert g["seed"] == 99 and g["stop"] is None


def _lp(x):
    return SimpleNamespace(logprob=x, rank=1, decoded_token="t")


def test_result_conversion():
    out = SimpleNamespace(token_ids=[5, 6], logprobs=[{5: _lp(-0.5), 9: _lp(-2.0)}, {6: _lp(-1.5)}],
                          finish_reason="stop", stop_reason="</answer>", text="a</answer>")  # fmt: skip
    seg = segment_from_output(out)
    assert seg.token_ids == [5, 6] and seg.logprobs == [-0.5, -1.5] and seg.stop_reason == "</answer>"
    with pytest.raises(RuntimeError, match="logprobs"):
        segment_from_output(SimpleNamespace(token_ids=[1], logprobs=None, finish_reason="length"))

    c = Continuation([1, 2], SamplingParams(max_new_tokens=5, seed=4))
    c.add(Segment([7, 8], [-1.0, -2.0], "abort"), version=0)
    c.interruptions += 1
    assert c.remaining == 3 and c.next_prompt() == [1, 2, 7, 8] and c.next_seed() != 4
    c.add(Segment([9], [-0.1], "stop", "</answer>", "x</answer>"), version=1)
    r = c.result("stop", "</answer>", 0.1)
    assert r.output_ids == [7, 8, 9] and r.output_versions == [0, 0, 1] and r.stop_string == "</answer>"


# ---- abort-and-continue with a double of vLLM's async engine --------------------------------------------------------
def next_token(version, context):
    return (sum(context) * 31 + 7 * version + len(context)) % 97


class FakeAsyncLLM:
    """Deterministic tokens that depend on the loaded weights' version; honours abort like vLLM's streams."""

    def __init__(self):
        self.version = 0
        self.aborted: set[str] = set()
        self.prefix_resets = 0
        self.seeds: list[int | None] = []
        self.model_runner = SimpleNamespace(model=SimpleNamespace(load_weights=self._load))

    def _load(self, weights):
        self.version = dict(weights)["version_marker"]

    async def generate(self, prompt, sp, request_id):
        self.seeds.append(sp["seed"])
        ctx, out = list(prompt), []
        for _ in range(sp["max_tokens"]):
            await asyncio.sleep(0.001)
            if request_id in self.aborted:
                yield SimpleNamespace(outputs=[self._out(out, "abort")])
                return
            t = next_token(self.version, ctx + out)
            out.append(t)
            yield SimpleNamespace(outputs=[self._out(out, None)])
        yield SimpleNamespace(outputs=[self._out(out, "length")])

    def _out(self, ids, finish):
        return SimpleNamespace(token_ids=list(ids), logprobs=[{t: _lp(-0.1 * self.version - 0.01)} for t in ids],
                               finish_reason=finish, stop_reason=None, text="")  # fmt: skip

    async def abort(self, ids):
        self.aborted.update(ids)

    async def collective_rpc(self, fn, args=()):
        return [fn(self, *args)]  # the double is its own (single) worker

    async def reset_prefix_cache(self):
        self.prefix_resets += 1


class FakeActor(VLLMEngineActorImpl):
    def _create_engine(self, model, engine_kwargs):
        return FakeAsyncLLM()

    def _request(self, prompt, sp_kwargs):
        return prompt, sp_kwargs


def test_update_weights_aborts_and_continues_with_versions():
    actor = FakeActor("fake")
    prompt = [1, 2, 3]
    n = 40

    async def scenario():
        task = asyncio.create_task(actor.generate(prompt, {"max_new_tokens": n, "seed": 5}))
        while not actor._running:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        await actor.update_weights({"version_marker": 1}, 1)
        return await task

    res = asyncio.run(scenario())
    ids, versions = res["output_ids"], res["output_versions"]
    k = versions.index(1)
    assert len(ids) == n and 0 < k < n and versions == [0] * k + [1] * (n - k)
    assert res["finish_reason"] == "length"
    ctx = prompt + ids[:k]  # after the update every token follows the new weights from that prefix
    for t in ids[k:]:
        assert t == next_token(1, ctx)
        ctx.append(t)
    assert all(math.isclose(x, -0.11) for x in res["output_logprobs"][k:])
    assert actor.engine.prefix_resets == 1 and actor.version == 1
    assert actor.engine.seeds[0] == 5 and actor.engine.seeds[1] not in (5, None)


def test_missing_vllm_is_a_clear_error():
    if HAS_VLLM:
        pytest.skip("vllm is installed here")
    with pytest.raises(UserFacingError, match="vllm==0.32.0"):
        make_engine(EngineConfig(kind="vllm", model="Qwen/Qwen2.5-7B"))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM, reason="needs vllm (the gpu extra)")
def test_vllm_engine_on_gpu(tiny_model_dir):
    from asearcher.llm.engine import GenerationRequest

    engine = make_engine(EngineConfig(kind="vllm", model=str(tiny_model_dir), max_model_len=1024,
                                      gpu_memory_utilization=0.3))  # fmt: skip

    async def go():
        tok = engine.tokenizer
        ids = tok.encode("The City Bank of New York", add_special_tokens=False)
        s = SamplingParams(max_new_tokens=16, temperature=1.0, seed=3)
        a = await engine.agenerate(GenerationRequest(ids, s))
        b = await engine.agenerate(GenerationRequest(ids, s))
        assert a.output_ids == b.output_ids and len(a.output_logprobs) == len(a.output_ids)
        await engine.update_weights(str(tiny_model_dir), 1)
        c = await engine.agenerate(GenerationRequest(ids, s))
        assert c.output_versions == [1] * len(c.output_ids)
        await engine.aclose()

    asyncio.run(go())
