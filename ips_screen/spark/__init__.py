"""The screen on Apache Spark (`ips-screen screen SOURCE --engine spark`), for populations
beyond one machine: the same reader, fact extraction and engine as the single-machine screen, the
same outputs (docs/scale.md).

`session`  the Spark session (the active one, or a new one on --master with --spark-conf)
`read`     the read stage: the input in parts (ranges of large files; URIs read by Spark), the
           exactness re-read, the problems merged in input order
`parts`    the per-part steps, plain Python (what the read tasks and the driver run)
`reduce`   the merge and per-patient steps, plain Python (what the Spark tasks run)
`job`      the Spark job: read, merge by patient, screen, write the outputs
`write`    --write: proposals written from the driver in bounded batches, under the lock

pyspark is imported only when a Spark screen runs (an optional extra, `ips-screen[spark]`).
"""
