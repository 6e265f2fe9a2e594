"""Context management: token estimation, eliding old tool outputs, and a long scripted session."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

from agentls.agent.budget import TokenEstimator, message_chars, reply_reserve, tool_schema_chars
from agentls.agent.context import ELIDED_PREFIX, default_protected, fit_to_context
from agentls.llm.factory import make_backend
from agentls.llm.types import Message, ToolCall, ToolSpec
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.refactor import run_refactor
from scripted_model import Reply, ScriptedModelServer

SYSTEM = Message("system", "You are a coding agent. " * 10)
TASK = Message("user", "Task: refactor a.py.\n" + "x = 1\n" * 40)


def file_text(name: str, lines: int = 60) -> str:
    return "\n".join(f"{k:>4}| {name}_{k} = compute({k}, {k + 1})" for k in range(1, lines + 1))


class Conversation:
    """Builds a loop-shaped history: system, task, then assistant call + tool result pairs."""

    def __init__(self) -> None:
        self.messages: list[Message] = [SYSTEM, TASK]
        self.ids = 0

    def call(self, name: str, output: str, content: str = "", **arguments: Any) -> None:
        self.ids += 1
        call = ToolCall(name, arguments, id=f"call_{self.ids}")
        self.messages.append(Message("assistant", content, tool_calls=[call]))
        self.messages.append(Message("tool", output, tool_call_id=call.id, name=name))

    def read(self, path: str, lines: int = 60) -> None:
        self.call("read", file_text(path.split(".")[0], lines), path=path)


def elided(messages: list[Message]) -> list[int]:
    return [i for i, m in enumerate(messages) if m.content.startswith(ELIDED_PREFIX)]


def budget_for(messages: list[Message], est: TokenEstimator, share: float) -> int:
    """A budget that holds ``share`` of the given conversation."""
    return int(est.estimate(messages) * share)


# -- estimator -----------------------------------------------------------------------------


def test_estimate_is_characters_over_the_prior_ratio() -> None:
    est = TokenEstimator(chars_per_token=4.0)
    msgs = [SYSTEM, TASK]
    chars = sum(message_chars(m) for m in msgs) + 100
    assert est.estimate(msgs, fixed_overhead_chars=100) == math.ceil(chars / 4.0)
    assert est.estimate([]) == 0


def test_calibration_learns_a_denser_tokenizer_and_never_assumes_fewer_tokens() -> None:
    est = TokenEstimator()
    msgs = [SYSTEM, TASK]
    seen = est.estimate(msgs, 50) * 2  # the server counted twice as many tokens
    est.calibrate(msgs, 50, seen)
    assert est.calibrated
    assert est.estimate(msgs, 50) >= seen
    assert est.estimate(msgs, 50) <= seen + 1
    # The next request is estimated with the learnt ratio.
    longer = [*msgs, Message("user", "y" * 700)]
    assert est.estimate(longer, 50) >= seen + 700 // 2


def test_calibration_does_not_trust_counts_below_the_prior() -> None:
    # Some servers report only the prompt tokens not served from cache: far too few.
    est = TokenEstimator(chars_per_token=3.5)
    msgs = [SYSTEM, TASK]
    before = est.estimate(msgs)
    est.calibrate(msgs, 0, 10)
    assert est.chars_per_token == 3.5
    assert est.estimate(msgs) == before


def test_calibration_follows_the_last_request_and_ignores_missing_counts() -> None:
    est = TokenEstimator()
    msgs = [SYSTEM, TASK]
    chars = est.chars(msgs)
    est.calibrate(msgs, 0, chars // 2)  # 2 chars/token
    est.calibrate(msgs, 0, 0)  # no count reported: keep what we know
    assert est.chars_per_token == chars / (chars // 2)
    est.calibrate(msgs, 0, chars // 3)  # 3 chars/token now
    assert est.chars_per_token == chars / (chars // 3)


def test_reply_reserve_and_tool_overhead() -> None:
    assert reply_reserve(2048) == 512
    assert reply_reserve(16384) == 16384 * 15 // 100
    assert reply_reserve(512) == 256  # never more than half the context
    spec = ToolSpec("read", "Read a file.", {"type": "object"})
    assert tool_schema_chars([spec]) == len(
        json.dumps(
            [{"name": "read", "description": "Read a file.", "parameters": {"type": "object"}}]
        )
    )


# -- eliding -------------------------------------------------------------------------------


def test_under_budget_nothing_changes() -> None:
    conv = Conversation()
    conv.read("a.py")
    est = TokenEstimator()
    out, count = fit_to_context(conv.messages, 100_000, est)
    assert out == conv.messages and count == 0


def test_old_tool_outputs_are_elided_oldest_first_and_the_wire_shape_stays() -> None:
    conv = Conversation()
    for k in range(8):
        conv.read(f"f{k}.py")
    original = [
        Message(m.role, m.content, list(m.tool_calls), m.tool_call_id, m.name)
        for m in conv.messages
    ]
    est = TokenEstimator()
    budget = budget_for(conv.messages, est, 0.6)

    out, count = fit_to_context(conv.messages, budget, est)

    assert est.estimate(out) <= budget
    gone = elided(out)
    assert count == len(gone) > 0
    # The oldest tool outputs, in order, with no gaps: 3, 5, 7, ...
    assert gone == [3 + 2 * k for k in range(len(gone))]
    assert out[3].content == (
        f"{ELIDED_PREFIX}: read of f0.py, 60 lines; call the tool again if you need it]"
    )
    for i, (before, after) in enumerate(zip(conv.messages, out, strict=True)):
        assert (after.role, after.tool_call_id, after.name) == (
            before.role,
            before.tool_call_id,
            before.name,
        )
        assert after.tool_calls == before.tool_calls  # assistant calls intact
        if i not in gone:
            assert after is before
    assert conv.messages == original  # the input was not modified


def test_elision_goes_below_the_budget_so_the_next_turns_append_without_changes() -> None:
    conv = Conversation()
    for k in range(8):
        conv.read(f"f{k}.py")
    est = TokenEstimator()
    budget = budget_for(conv.messages, est, 0.6)
    out, _ = fit_to_context(conv.messages, budget, est, target_fill=0.8)
    assert est.estimate(out) <= math.ceil(budget * 0.8)

    # The next turn adds a small result: nothing else changes, so the cached prefix holds.
    nxt = Conversation()
    nxt.messages = list(out)
    nxt.ids = conv.ids
    nxt.call("grep", "f1.py:3: f1_3 = compute(3, 4)", pattern="compute")
    again, count = fit_to_context(nxt.messages, budget, est)
    assert count == 0 and again == nxt.messages


def test_system_task_and_last_messages_are_never_elided() -> None:
    conv = Conversation()
    for k in range(5):
        conv.read(f"f{k}.py")
    est = TokenEstimator()
    # So small that every tool output would have to go.
    budget = est.estimate(conv.messages[:2]) + 10
    out, _ = fit_to_context(conv.messages, budget, est)
    assert out[0] is SYSTEM and out[1] is TASK
    assert not out[-1].content.startswith(ELIDED_PREFIX)  # the newest result is kept (maybe cut)
    assert out[-1].content.startswith("   1| f4_1")
    assert out[-2] is conv.messages[-2]


def test_latest_state_of_edited_files_is_protected() -> None:
    conv = Conversation()
    conv.read("a.py")  # 3: older read of an edited file
    conv.read("b.py")  # 5
    conv.read("a.py", lines=61)  # 7: newest read of a.py -> protected
    conv.call("edit", "Edited a.py. Lines 1-5 now:\n" + file_text("a", 5), path="a.py")  # 9
    conv.call("edit", "Edited a.py. Lines 8-12 now:\n" + file_text("a", 5), path="./a.py")  # 11
    for k in range(4):
        conv.read(f"c{k}.py")  # 13, 15, 17, 19
    est = TokenEstimator()
    protect = default_protected(conv.messages)
    assert [i for i, m in enumerate(conv.messages) if protect(i, m)] == [0, 1, 7, 11, 18, 19]

    budget = est.estimate(conv.messages) - est.estimate(conv.messages[3:6]) - 20
    out, _ = fit_to_context(conv.messages, budget, est, target_fill=0.5)
    gone = elided(out)
    assert 3 in gone and 5 in gone and 9 in gone
    assert out[7] is conv.messages[7] and out[11] is conv.messages[11]
    assert out[9].content == (
        f"{ELIDED_PREFIX}: result of edit on a.py, 6 lines; the change stays applied, "
        "read the file to see it]"
    )


def test_a_failed_read_does_not_count_as_the_latest_state() -> None:
    conv = Conversation()
    conv.read("a.py")  # 3
    conv.call("read", "Error: file 'a.py' not found", path="a.py")  # 5
    conv.call("edit", "Edited a.py.", path="a.py")  # 7
    conv.read("z.py")  # 9
    conv.read("y.py")  # 11
    protect = default_protected(conv.messages)
    assert protect(3, conv.messages[3]) and not protect(5, conv.messages[5])


def test_tool_results_without_call_ids_are_matched_by_position() -> None:
    call = ToolCall("read", {"path": "a.py"})
    edit = ToolCall("edit", {"path": "a.py", "old_text": "x", "new_text": "y"})
    msgs = [
        SYSTEM,
        TASK,
        Message("assistant", "", tool_calls=[call]),
        Message("tool", file_text("a"), name="read"),
        Message("assistant", "", tool_calls=[edit]),
        Message("tool", "Edited a.py.", name="edit"),
        Message("user", "note"),
        Message("assistant", "thinking"),
    ]
    protect = default_protected(msgs)
    assert protect(3, msgs[3])


def test_fitting_is_idempotent_and_deterministic() -> None:
    conv = Conversation()
    for k in range(10):
        conv.read(f"f{k}.py")
    est = TokenEstimator()
    budget = budget_for(conv.messages, est, 0.5)
    first, count = fit_to_context(conv.messages, budget, est)
    second, _ = fit_to_context(conv.messages, budget, est)
    assert first == second and count > 0
    again, recount = fit_to_context(first, budget, est)
    assert again == first and recount == 0
    # Even with a smaller budget, what is elided already is not elided (or counted) again.
    smaller, more = fit_to_context(first, budget // 2 + 200, est)
    assert more == len(elided(smaller)) - len(elided(first))
    for i in elided(first):
        assert smaller[i] == first[i]


def test_the_prefix_stays_byte_stable_across_consecutive_turns() -> None:
    est = TokenEstimator()
    conv = Conversation()
    for k in range(6):
        conv.read(f"f{k}.py")
    budget = budget_for(conv.messages, est, 0.9)
    history, _ = fit_to_context(conv.messages, budget, est)
    sent: list[list[Message]] = [history]
    for k in range(6, 40):  # the loop keeps the fitted list and appends each turn
        turn = Conversation()
        turn.messages, turn.ids = list(history), 100 + k
        turn.read(f"f{k}.py", lines=20)  # a sixth of what the first reads returned
        history, _ = fit_to_context(turn.messages, budget, est)
        sent.append(history)
    appends_only = 0
    for before, after in itertools.pairwise(sent):
        assert est.estimate(after) <= budget
        assert after[:2] == [SYSTEM, TASK]
        first_change = next(
            (i for i, m in enumerate(before) if i >= len(after) or after[i] != m), len(before)
        )
        # What came before the first elided message never changes: it stays in the cache.
        assert first_change >= min(elided(before), default=2)
        appends_only += first_change == len(before)
    # Elision steps are rare: most turns only append to what was sent before.
    assert appends_only >= len(sent) // 2


def test_runs_of_elided_exchanges_fold_into_one_when_markers_fill_the_context() -> None:
    est = TokenEstimator()
    conv = Conversation()
    conv.read("a.py", lines=5)  # 3: protected (a.py is edited below)
    conv.call("edit", "Edited a.py.", path="a.py")  # 5: protected
    for k in range(40):
        conv.call("grep", f'{ELIDED_PREFIX}: grep for "x{k}", 1 lines; call again]', pattern="x")
    conv.read("z.py", lines=5)
    budget = est.estimate(conv.messages) // 2
    out, _ = fit_to_context(conv.messages, budget, est)
    assert est.estimate(out) <= budget
    assert out[:7] == conv.messages[:7]  # protected exchanges stay; the run starts at 6
    assert out[7].content.startswith(f"{ELIDED_PREFIX}: results of ")
    folded = [m for m in out if "earlier tool calls" in m.content]
    assert len(folded) == 1
    # Every remaining call still has its result, and roles alternate as before.
    ids = [c.id for m in out for c in m.tool_calls]
    assert ids == [m.tool_call_id for m in out if m.role == "tool"]
    assert out[-2:] == conv.messages[-2:]
    # Folding again merges the counts instead of starting over.
    more = Conversation()
    more.messages, more.ids = list(out), 1000
    for k in range(40):
        more.call("ls", f"{ELIDED_PREFIX}: ls of d{k}, 1 lines; call again]", path=f"d{k}")
    more.read("y.py", lines=5)
    again, _ = fit_to_context(more.messages, budget, est)
    merged = [m.content for m in again if "earlier tool calls" in m.content]
    total = sum(int(c.split("results of ")[1].split()[0]) for c in merged)
    singles = sum(
        1
        for m in again
        if m.role == "tool" and m.content.startswith(ELIDED_PREFIX) and "earlier" not in m.content
    )
    # Every elided result is accounted for: 40 greps, the read of z.py, 40 ls.
    assert total + singles == 40 + 1 + 40


def test_long_assistant_texts_are_shortened_when_eliding_is_not_enough() -> None:
    conv = Conversation()
    conv.call("ls", "a.py\nb.py", content="Let me think. " * 200, path=".")
    conv.call("ls", "a.py", content="ok")
    conv.call("ls", "b.py", content="ok")
    est = TokenEstimator()
    budget = est.estimate(conv.messages) - est.estimate([Message("user", "x" * 2000)])
    out, _ = fit_to_context(conv.messages, budget, est)
    assert est.estimate(out) <= budget
    assert out[2].content.startswith("Let me think.")
    assert out[2].content.endswith("characters elided to save context]")
    assert len(out[2].content) < 300
    assert out[2].tool_calls == conv.messages[2].tool_calls


def test_last_resort_cuts_the_middle_of_the_largest_protected_output() -> None:
    conv = Conversation()
    conv.read("small.py", lines=5)
    conv.read("huge.py", lines=400)  # the newest result: protected
    est = TokenEstimator()
    budget = est.estimate(conv.messages[:-1]) + 300
    out, count = fit_to_context(conv.messages, budget, est)
    assert est.estimate(out) <= budget
    assert count >= 1
    cut = out[-1].content
    assert cut.startswith("   1| huge_1 = compute(1, 2)")  # head kept
    assert cut.endswith(" 400| huge_400 = compute(400, 401)")  # tail kept
    assert "elided to save context; read with offset/limit to see them" in cut
    assert out[-1].tool_call_id == conv.messages[-1].tool_call_id
    # Stable: a second pass leaves it alone.
    assert fit_to_context(out, budget, est) == (out, 0)


def test_when_system_and_task_do_not_fit_the_messages_come_back_as_they_are() -> None:
    conv = Conversation()
    conv.read("a.py")
    est = TokenEstimator()
    budget = est.estimate(conv.messages[:2]) - 1
    out, count = fit_to_context(conv.messages, budget, est)
    assert out == conv.messages and count == 0
    assert est.estimate(out) > budget  # the caller sees it cannot fit and says so


def test_a_custom_protection_predicate_replaces_the_default() -> None:
    conv = Conversation()
    for k in range(4):
        conv.read(f"f{k}.py")
    est = TokenEstimator()
    budget = budget_for(conv.messages, est, 0.5)
    out, _ = fit_to_context(conv.messages, budget, est, protected=lambda i, _m: i == 3)
    assert out[3] is conv.messages[3]
    assert out[0] is SYSTEM and out[1] is TASK  # always kept, whatever the predicate says
    assert 5 in elided(out)


# -- end to end ----------------------------------------------------------------------------

CONTEXT_LENGTH = 2048
BIG_FILES = 25


async def test_a_long_session_never_exceeds_the_context_length(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    """Read 25 files of ~60 lines in a 2048-token context: every request must still fit.

    Needs the tool loop to call ``fit_to_context`` before each request.
    """
    (tmp_path / "main.py").write_text("def f(x):\n    return x + 1\n")
    for k in range(BIG_FILES):
        body = "\n".join(f"value_{k:02d}_{j:02d} = {k * j}  # line {j}" for j in range(60))
        (tmp_path / f"mod_{k:02d}.py").write_text(body + "\n")

    steps: list[Reply] = [
        Reply(tool_calls=[{"name": "read", "arguments": {"path": "main.py"}}]),
        Reply(
            tool_calls=[
                {
                    "name": "edit",
                    "arguments": {
                        "path": "main.py",
                        "old_text": "return x + 1",
                        "new_text": "return x + 2",
                    },
                }
            ]
        ),
        *(
            Reply(tool_calls=[{"name": "read", "arguments": {"path": f"mod_{k:02d}.py"}}])
            for k in range(BIG_FILES)
        ),
        Reply(tool_calls=[{"name": "finish", "arguments": {"summary": "Read them all."}}]),
    ]

    served = iter(steps)

    def script(body: dict[str, Any]) -> Reply:
        # Count turns here, not from the messages: folding drops old assistant messages.
        return next(served, steps[-1])

    scripted_model.script(script)
    settings = Settings(
        backend="ollama",
        base_url=scripted_model.url,
        model="gemma4:12b-it-qat",
        context_length=CONTEXT_LENGTH,
        max_turns=30,
        # A 2048-token window holds the fixed prefix (about 850 tokens with the batch edit
        # tool), the task and the protected state, but not 600 tokens of skills as well: the
        # default skills budget shrinks to a tenth of the window (204 tokens).
    )
    ctx = TaskContext(root=tmp_path, settings=settings, backend=make_backend(settings))
    try:
        result = await run_refactor(ctx, TaskRequest(tmp_path / "main.py", instruction="Bump."))
    finally:
        await ctx.backend.aclose()

    requests = scripted_model.requests
    assert len(requests) == len(steps)
    assert result.summary == "Read them all.\n\nNo tests found; not verified."
    task = requests[0]["messages"][1]
    for n, request in enumerate(requests):
        # What the scripted server counts (len(json.dumps(messages)) // 4), plus the schemas.
        tokens = len(json.dumps(request["messages"])) // 4 + len(json.dumps(request["tools"])) // 4
        assert tokens <= CONTEXT_LENGTH, f"request {n} has {tokens} tokens"
        assert request["messages"][1] == task, f"request {n} changed the task"
        # The edited file's latest state is still there after the edit.
        if n >= 3:
            contents = [m["content"] for m in request["messages"] if m["role"] == "tool"]
            assert contents[0].startswith("   1| def f(x):"), f"request {n} lost main.py"
            assert contents[1].startswith("Edited main.py"), f"request {n} lost the edit"
