"""`make grade`, one job per module.

    config.py      GradeConfig: every option of a run, frozen, made once from the command line
    collect.py     what was handed in -> one Row per file, normalised (tools.intake), one per chapter
    jobs.py        a job folder per student's chapter: sandbox policy, kernel spec, cache key
    supervise.py   running the workers (tools.grade_worker), timeouts, port-race retries, leftovers
    execute.py     inside a worker: nbgrader's Execute, bounded output, the guard's channel
    gradebook.py   merging each job's gradebook into grading/gradebook.db
    report.py      grades.csv and the summary table
    classreport.py grading/report.html: what the class got wrong
tools/grade.py runs them in that order; tools/guard/ is the guard the kernels run under.
"""
