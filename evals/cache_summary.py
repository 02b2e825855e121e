"""The cache eval's summary in docs/evals.md: the tuning split's table per threshold, its sessions and
wrong answers, the threshold it recommends, and the held-out split's figures beside the baseline."""

from __future__ import annotations

from evals.harness_types import EvalRun
from evals.splits import Interval

FALSE_HITS_SHOWN = 6


def recommended(results: dict[float, dict[str, float]]) -> float | None:
    """The lowest threshold (the most hits) at which no replay served a wrong answer; None if none."""
    clean = [t for t, m in sorted(results.items()) if m["false_hits_total"] == 0]
    return clean[0] if clean else None


def held_out_text(
    params: dict,
    chosen: float | None,
    configured: float,
    held_out: dict[str, tuple[dict[str, float], dict[str, Interval]]],
) -> str:
    base, base_ci = held_out["exact-only"]
    head = (
        f"**Held out** ({params['questions']} questions, {params['paraphrases']} paraphrases, "
        f"{params['near_misses']} near-misses, {params['sessions']} sessions, split seed {params['split_seed']}; "
        "95% bootstrap intervals over the traffic requests). "
    )
    baseline = (
        f"The exact cache alone (the baseline) serves {base_ci['traffic_hit_rate'].percent()} of traffic, "
        f"{base['false_hits_total']:.0f} wrong answers in all."
    )
    if chosen is None:
        return head + "No threshold was clean on the tuning split, so none is recommended. " + baseline
    m, ci = held_out[f"semantic-{chosen:.2f}"]
    return (
        head + f"At {chosen:.2f}, chosen on the tuning split (configured: {configured:.2f}), the semantic cache serves "
        f"{ci['traffic_semantic_hit_rate'].percent()} of traffic beyond the exact cache, with a false-hit rate of "
        f"{ci['traffic_false_hit_rate'].percent()} of hits; {pct(m['paraphrase_hit_rate'])} of paraphrases are "
        f"served their answer, {pct(m['near_miss_false_hit_rate'])} of near-misses a wrong one, "
        f"{m['false_hits_total']:.0f} wrong answers in all. " + baseline
    )


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def summary(
    params: dict,
    results: dict[float, dict[str, float]],
    configured: float,
    shown_run: EvalRun | None,
    closest: float | None,
) -> str:
    rows = []
    for threshold, m in sorted(results.items()):
        rows.append(
            f"| {threshold:.2f}{' (configured)' if threshold == configured else ''} "
            f"| {pct(m['paraphrase_hit_rate'])} | {pct(m['paraphrase_false_hit_rate'])} "
            f"| {pct(m['near_miss_false_hit_rate'])} | {pct(m['traffic_exact_hit_rate'])} "
            f"| {pct(m['traffic_semantic_hit_rate'])} | {m['traffic_false_hits']:.0f} "
            f"| {m['false_hits_total']:.0f} |"
        )
    m = results[configured]
    ceiling = pct(m["traffic_reuse_ceiling"])
    false_hits = shown_run.tables["false_hits"] if shown_run else []
    shown = "".join(
        f'\n- ({row["kind"]}, {row["result"]} {row["similarity"]}) "{row["question"]}" was served '
        f'the answer to "{row["cached_question"]}"'
        for row in false_hits[:FALSE_HITS_SHOWN]
    )
    at = shown_run.params["threshold"] if shown_run else configured
    shown_label = (
        f"Wrong answers at the configured {configured:.2f}:"
        if at == configured
        else f"Wrong answers at the configured {configured:.2f}: none. At {at:.2f}, the highest threshold "
        "that served any:"
    )
    return (
        f"Dataset `{params['dataset']}`, **tuning split**: {params['questions']} questions, "
        f"{params['paraphrases']} hand-written paraphrases of them, {params['near_misses']} near-misses "
        f"(worded like one question, asking what another answers), {params['sessions']} sessions "
        f"({params['session_turns']} turns); embedder "
        f"{params['embedder_model']}. Requests go through the router's `ResponseCache` with the router's keys "
        "(scope from `router.cache.cache_scope`, exact key the digest of scope and messages), exact cache first. "
        "A false hit serves an answer stored for a question whose gold shares no section with the asker's.\n\n"
        "In order: the questions, then the paraphrases, then the near-misses, each asked once. Traffic: "
        f"{params['traffic_requests']} requests, topics by Zipf-like popularity (exponent {params['zipf_exponent']}, "
        f"seed {params['traffic_seed']}), each in any of its phrasings; a perfect cache would hit {ceiling} of them. "
        "Wrong answers: every false hit of every replay below (questions, paraphrases, near-misses, traffic, "
        "sessions).\n\n"
        "| threshold | paraphrases served their answer | paraphrases served a wrong one | near-misses served a "
        "wrong one | traffic exact hits | traffic semantic hits | traffic false hits | wrong answers |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        + "\n".join(rows)
        + "\n\n"
        + sessions_text(results, configured)
        + "\n\n"
        + shown_label
        + (shown or " none.")
        + "\n\n"
        + recommendation(results, configured, closest)
    )


def sessions_text(results: dict[float, dict[str, float]], configured: float) -> str:
    other = max(
        m[f"{mode}_followup_other_conversation_hits"] for m in results.values() for mode in ("sessions", "stateless")
    )
    m = results[configured]
    return (
        f"Sessions, with the router's memory (a session id) and stateless (the client resends the conversation): "
        f"at any threshold, {other:.0f} of {m['sessions_followups']:.0f} follow-ups were served an answer stored "
        f"after other earlier turns. At {configured:.2f}, {m['sessions_followups_after_shared_history']:.0f} "
        "follow-ups came after a history an earlier session had had: "
        f"{m['sessions_followup_exact_hits']:.0f} exact hits (the same follow-up), "
        f"{m['sessions_followup_semantic_hits']:.0f} semantic hits, {m['sessions_followup_false_hits']:.0f} wrong "
        f"(stateless: {m['stateless_followup_exact_hits']:.0f}, {m['stateless_followup_semantic_hits']:.0f}, "
        f"{m['stateless_followup_false_hits']:.0f}). With the conversation left out of the scope, "
        f"{m['blind_followup_other_conversation_hits']:.0f} follow-ups would have been served another "
        f"conversation's answer, {m['blind_followup_false_hits']:.0f} of them wrong."
    )


def recommendation(results: dict[float, dict[str, float]], configured: float, closest: float | None) -> str:
    best, c = recommended(results), results[configured]
    now = (
        f"At the configured {configured:.2f} the semantic cache adds {pct(c['traffic_semantic_hit_rate'])} of "
        f"traffic to the exact cache's {pct(c['traffic_exact_hit_rate'])}, and serves a wrong answer to "
        f"{pct(c['near_miss_false_hit_rate'])} of near-misses ({c['false_hits_total']:.0f} wrong answers in all)."
    )
    if best is None:
        return f"No threshold measured served no wrong answer. {now}"
    m = results[best]
    margin = "" if closest is None else f" (the most similar question ever served a wrong answer scored {closest:.3f})"
    return (
        f"**The figures support {best:.2f} as the default**: the lowest threshold at which no replay served a "
        f"wrong answer{margin}. There the semantic cache adds {pct(m['traffic_semantic_hit_rate'])} of traffic to "
        f"the exact cache's {pct(m['traffic_exact_hit_rate'])} and serves {pct(m['paraphrase_hit_rate'])} of "
        f"paraphrases their answer. " + ("" if best == configured else now)
    )
