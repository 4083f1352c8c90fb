"""nbgrader configuration: `solutions/` is the source, `chapters/` the student release.

Everything instructor-only (submissions, autograded copies, feedback, the gradebook) lives
under the git-ignored `grading/`. `root` is this file's folder, so a copy of the repository
(tests, the grader's working copy) is a self-contained course.
"""

import os

c = get_config()  # noqa: F821 (injected by traitlets)

ROOT = os.path.dirname(os.path.abspath(__file__))
GRADING = os.environ.get("COURSE_GRADING_DIR", os.path.join(ROOT, "grading"))
os.makedirs(GRADING, exist_ok=True)  # sqlite cannot create the parent directory

c.CourseDirectory.root = ROOT
c.CourseDirectory.course_id = "untangling-features"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "chapters"
# `make grade` reads what students handed in from grading/submitted/ (never modified) and gives
# nbgrader normalised copies (tools/intake.py) in grading/work/submitted/.
c.CourseDirectory.submitted_directory = os.path.relpath(os.path.join(GRADING, "work", "submitted"), ROOT)
c.CourseDirectory.autograded_directory = os.path.relpath(os.path.join(GRADING, "autograded"), ROOT)
c.CourseDirectory.feedback_directory = os.path.relpath(os.path.join(GRADING, "feedback"), ROOT)
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(GRADING, "gradebook.db")

# Every released chapter starts with the header: Colab badge and the one setup cell.
c.IncludeHeaderFooter.header = os.path.join(ROOT, "templates", "header.ipynb")

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Per-cell timeout in seconds (nbgrader's default is 30). Training cells in the `fast`
# profile finish in well under a minute; a student's infinite loop costs at most this.
c.Execute.timeout = int(os.environ.get("COURSE_CELL_TIMEOUT", "300"))
c.Execute.interrupt_on_timeout = True
# Colab ignores `deletable: false`: put back test cells a student deleted.
c.OverwriteCells.add_missing_cells = True
