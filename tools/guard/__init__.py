"""The grading guard: an answer that reaches the reference, or tampers with the tests, scores nothing.

Two halves, one per process:

* **kernel side** (standard library only, installed in every student kernel by
  ``tools/sandbox.py`` before any notebook code runs): ``kernel.py`` (audit hook, profiler,
  channel, the verdict of every locked cell), ``watch.py`` (which frame is whose, snapshots of
  what the tests use, what an answer's objects lead to). Their sources are executed in private
  namespaces that no notebook object leads to; see ``kernel.py`` for the threat model.
* **grader side**: ``spec.py`` (what a job's guard must know: the locked cells, the exercises,
  the chapter's allowed helpers in ``allowed/``), ``verdict.py`` (reads the channel, zeroes the
  exercises it must, says why) and ``trace.py`` (derives the allowed helpers from the
  reference answers, for review).
"""
