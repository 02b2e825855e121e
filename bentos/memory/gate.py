"""What of a model's proposals is applied: the similarity gate.

Small models update and delete freely: measured, Qwen 1.5B overwrote four unrelated memories on
fifteen exchanges ("my dog died" deleting "learns Rust"). So an update applies only to a memory whose
vector is at least `update_similarity` (cosine) to the new text, else it becomes an add; a delete only
to a memory that similar to the user's turn, else it is dropped. "I moved to Berlin" then replaces
"I live in Paris" (cosine 0.55-0.66 with MiniLM) while unrelated facts (0.21-0.29) stay.
"""

from __future__ import annotations

from dataclasses import dataclass

from bentos.memory.extraction import Proposal
from bentos.memory.privacy import invented_placeholders
from bentos.memory.rows import MemoryRow, text_digest
from bentos.memory.store import AddOp, DeleteOp, Embedded, UpdateOp
from ragyard.contracts.memory import AppliedOperation


@dataclass(frozen=True)
class Neighbour:
    row: MemoryRow
    vector: list[float]
    turn_similarity: float  # cosine to the user's turn


def cosine(a: list[float], b: list[float]) -> float:
    """Of the embedder's unit vectors: their dot product."""
    return sum(x * y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class Thresholds:
    update_similarity: float
    max_chars: int


def decide(
    proposals: list[Proposal],
    vectors: dict[str, list[float]],
    neighbours: list[Neighbour],
    turn: str,
    limits: Thresholds,
) -> tuple[list[AddOp | UpdateOp | DeleteOp], list[AppliedOperation]]:
    """The operations to apply, and the proposals dropped, with why. `vectors`: each proposed text's."""
    plan: list[AddOp | UpdateOp | DeleteOp] = []
    dropped: list[AppliedOperation] = []
    targeted: set[str] = set()
    sources = [turn, *(n.row.text for n in neighbours)]

    def drop(proposal: Proposal, note: str) -> None:
        dropped.append(AppliedOperation(op="dropped", text=proposal.text or None, note=f"{proposal.op}: {note}"))

    for proposal in proposals:
        target = (
            neighbours[proposal.index] if proposal.index is not None and 0 <= proposal.index < len(neighbours) else None
        )
        if proposal.op in ("add", "update"):
            if not proposal.text:
                drop(proposal, "no text")
                continue
            if len(proposal.text) > limits.max_chars:
                drop(proposal, f"text over {limits.max_chars} characters")
                continue
            if invented := invented_placeholders(proposal.text, sources):
                drop(proposal, f"invented placeholders {sorted(invented)}")
                continue
        if proposal.op == "delete":
            if target is None:
                drop(proposal, f"no memory [{proposal.index}]")
            elif target.turn_similarity < limits.update_similarity:
                drop(
                    proposal,
                    f"memory [{proposal.index}] is too far from the message "
                    f"({target.turn_similarity:.2f} < {limits.update_similarity})",
                )
            elif target.row.id not in targeted:
                targeted.add(target.row.id)
                plan.append(DeleteOp(target.row.id, text_digest(target.row.text)))
            continue
        memory = Embedded(proposal.text, vectors[proposal.text])
        note = None
        if proposal.op == "update":
            similarity = cosine(memory.vector, target.vector) if target is not None else None
            if (
                target is not None
                and similarity is not None
                and similarity >= limits.update_similarity
                and target.row.id not in targeted
            ):
                targeted.add(target.row.id)
                if text_digest(memory.text) != text_digest(target.row.text):
                    plan.append(UpdateOp(target.row.id, text_digest(target.row.text), memory))
                continue
            note = f"update of [{proposal.index}] added instead: " + (
                "no such memory"
                if similarity is None
                else "already updated"
                if similarity >= limits.update_similarity
                else f"too far from it ({similarity:.2f} < {limits.update_similarity})"
            )
        # An add, or an update the gate turned into one: the store skips it if it is a duplicate.
        plan.append(AddOp(memory, note))
    return plan, dropped
