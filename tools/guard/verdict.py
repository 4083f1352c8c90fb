"""Grader side: read what the guard said from inside the kernel, and zero what must not score.

The channel carries authenticated records (see kernel.py). A test cell keeps its points only
when the guard saw it pass, with no flag against its exercise; otherwise it scores 0, needs a
manual grade in formgrader, and the reason goes to the feedback, the CSV and the summary.
"""

from __future__ import annotations

import hashlib
import re

RECORD = re.compile(r"G1 (\d+) (\S+) ([a-z]+)((?:\t[^\t=]+=[^\t]*)*)")


def _mac(key: bytes, text: str) -> str:
    block = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block) + text.encode("utf-8", "replace")).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in block) + inner).hexdigest()[:32]


def parse(raw: bytes) -> dict:
    """The genuine records of a channel, in order; anything else (a notebook writing to the pipe)
    is counted and ignored."""
    key, expect, records, ignored = None, 0, [], 0
    for chunk in raw.split(b"\x1e")[1:]:
        line = chunk.split(b"\n", 1)[0].decode("utf-8", "replace")
        m = RECORD.fullmatch(line)
        if not m:
            ignored += 1
            continue
        seq, mac, kind, rest = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        fields = dict(item.split("=", 1) for item in rest.split("\t")[1:])
        if key is None:
            if kind == "hello" and seq == 0 and mac == "-" and re.fullmatch(r"[0-9a-f]{64}", fields.get("key", "")):
                key, expect = bytes.fromhex(fields["key"]), 1
                records.append((kind, fields))
            else:
                ignored += 1
            continue
        if seq != expect or mac != _mac(key, f"{seq} {kind}{rest}"):
            ignored += 1
            continue
        expect += 1
        records.append((kind, fields))
    return {"hello": key is not None, "records": records, "ignored": ignored}


def judge(channel: dict, scores: dict[str, float | None]) -> dict:
    """`scores`: test cell -> nbgrader's automatic score. Returns which tests lose their points
    and why, and the flags no exercise could be blamed for."""
    passed, failed, flags, errors = {}, set(), [], []
    for kind, f in channel["records"]:
        if kind == "pass":
            passed[f.get("test")] = int(f.get("flags", "0") or 0)
        elif kind == "fail":
            failed.add(f.get("test"))
        elif kind == "flag":
            flags.append(f)
        elif kind == "error":
            errors.append(f"{f.get('event')}: {f.get('what')}")
    zero: dict[str, list[str]] = {}
    for test, score in scores.items():
        reasons = [f"{fl.get('what')} (in {fl.get('cell')})" for fl in flags
                   if test in fl.get("tests", "").split(",")]
        if score:
            if not channel["hello"]:
                reasons.append("the grader's guard never reported from the kernel")
            elif test in failed:
                reasons.append("the test failed in the kernel, but its failure did not show")
            elif test not in passed:
                reasons.append("the grader's guard did not see this test pass (its channel went silent)")
            elif passed[test] and not reasons:
                reasons.append("flagged by the grader's guard")
        if reasons:
            zero[test] = list(dict.fromkeys(reasons))
    loose = [f"{fl.get('what')} (in {fl.get('cell')})" for fl in flags if not fl.get("tests")]
    return {"zero": zero, "unattributed": list(dict.fromkeys(loose)), "errors": errors,
            "ignored": channel["ignored"]}


def apply(verdict: dict, gradebook_url: str, course_id: str, chapter: str, student: str, autograded) -> dict:
    """Zero the flagged tests in the job's gradebook and say why in the autograded notebook;
    returns what the grades CSV needs: {"tampering": [...], "notes": [...]}."""
    import nbformat
    from nbgrader.api import Gradebook

    zero = verdict["zero"]
    if zero:
        with Gradebook(gradebook_url, course_id=course_id) as gb:
            for test in zero:
                grade = gb.find_grade(test, chapter, chapter, student)
                grade.auto_score, grade.needs_manual_grade = 0.0, True
            gb.db.commit()
        for cell in autograded.cells:
            test = cell.metadata.get("nbgrader", {}).get("grade_id")
            if test in zero and cell.cell_type == "code":
                cell.outputs.append(nbformat.v4.new_output(
                    "error", ename="GradingGuard", traceback=[],
                    evalue="this exercise scores 0 until your instructor looks at it: " + "; ".join(zero[test])))
    notes = [f"{test}: {'; '.join(reasons)}" for test, reasons in zero.items()]
    notes += [f"tampering: {what}" for what in verdict["unattributed"]]
    notes += [f"guard error: {e}" for e in verdict["errors"][:3]]
    if verdict["ignored"]:
        notes.append(f"{verdict['ignored']} record(s) on the guard's channel were not the guard's")
    tampering = list(zero) or (["the notebook"] if verdict["unattributed"] else [])
    return {"tampering": tampering, "notes": notes}
