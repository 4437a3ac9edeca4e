"""The wedge/stall rule watches the counter that moves during a generation (issue 15).

llama-server's `llamacpp:tokens_predicted_total` only moves when a request ends; its
`llamacpp:n_decode_total` moves at every decode step (verified against the real server in
tests/e2e/test_llamacpp.py). A long healthy generation must read as progress.
"""

from __future__ import annotations

from gx10slots.smoke.live import progress_verdict
from gx10slots.smoke.profiles import LLAMA_SERVER, PROFILES, SGLANG, TRTLLM
from gx10slots.smoke.progress import Verdict, sample_of


def _long_generation() -> list[dict[str, float]]:
    """Scrapes during one request generating for 40 s: decodes move, predicted tokens do not."""
    return [
        {
            "llamacpp:tokens_predicted_total": 12.0,
            "llamacpp:n_decode_total": 100.0 + 25 * i,
            "llamacpp:requests_processing": 1.0,
        }
        for i in range(9)
    ]


def test_a_long_llama_server_generation_is_progress_not_a_wedge() -> None:
    samples = [sample_of(t, LLAMA_SERVER, at=5.0 * i) for i, t in enumerate(_long_generation())]
    counter = LLAMA_SERVER.progress_counter
    assert counter == "llamacpp:n_decode_total"
    verdict = progress_verdict(samples, 30.0, counter, "llamacpp:requests_processing")
    assert verdict.verdict is Verdict.PROGRESSING, verdict.detail


def test_a_llama_server_with_flat_decodes_under_a_running_request_is_a_wedge() -> None:
    frozen = [{**t, "llamacpp:n_decode_total": 100.0} for t in _long_generation()]
    samples = [sample_of(t, LLAMA_SERVER, at=5.0 * i) for i, t in enumerate(frozen)]
    verdict = progress_verdict(
        samples, 30.0, LLAMA_SERVER.progress_counter or "", "llamacpp:requests_processing"
    )
    assert verdict.verdict is Verdict.STALLED
    assert "llamacpp:n_decode_total" in verdict.detail


def test_profiles_without_a_separate_progress_counter_watch_their_generation_counter() -> None:
    for profile in PROFILES.values():
        if profile.progress_metric is None and profile.generation_counter_per_step:
            assert profile.progress_counter == profile.generation_tokens_metric, profile.name


def _sglang_long_generation() -> list[dict[str, float]]:
    """SGLang during one long request: `generation_tokens_total` is added when a request
    finishes, `realtime_tokens_total` (summed over its `mode` labels) at every decode step."""
    return [
        {
            "sglang:generation_tokens_total": 12.0,
            "sglang:realtime_tokens_total": 40.0 + 25 * i,
            "sglang:num_running_reqs": 1.0,
        }
        for i in range(9)
    ]


def test_a_long_sglang_generation_is_progress_and_a_frozen_one_a_wedge() -> None:
    gauge = SGLANG.requests_running_metric or ""
    assert SGLANG.progress_counter == "sglang:realtime_tokens_total"
    samples = [sample_of(t, SGLANG, at=5.0 * i) for i, t in enumerate(_sglang_long_generation())]
    verdict = progress_verdict(samples, 30.0, SGLANG.progress_counter, gauge)
    assert verdict.verdict is Verdict.PROGRESSING, verdict.detail
    frozen = [{**t, "sglang:realtime_tokens_total": 40.0} for t in _sglang_long_generation()]
    samples = [sample_of(t, SGLANG, at=5.0 * i) for i, t in enumerate(frozen)]
    verdict = progress_verdict(samples, 30.0, SGLANG.progress_counter, gauge)
    assert verdict.verdict is Verdict.STALLED


def test_trtllm_has_no_stall_counter_its_token_counter_moves_as_requests_end() -> None:
    # A long healthy generation keeps trtllm_generation_tokens_total flat: no stall rule on it.
    assert TRTLLM.generation_tokens_metric == "trtllm_generation_tokens_total"
    assert TRTLLM.progress_counter is None
