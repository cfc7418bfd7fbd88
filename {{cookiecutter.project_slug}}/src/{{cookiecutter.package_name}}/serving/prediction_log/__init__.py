"""The prediction log: every served prediction and every feedback label, the service's audit
record. A request is answered only once its records are durable (`PredictionLog`, writer.py);
monitoring reads them back.

Where it goes: `serving.prediction_log` in params.yaml; the `PREDICTION_LOG` environment
variable overrides it, else `PREDICTION_LOG_FILE`, a file holding the location (a Kubernetes
Secret mounted as a file) (location.py):

- a directory (the default, `logs/predictions`): JSON lines files
  `predictions-<YYYY-MM-DD>-<pid>.jsonl` and `feedback-<YYYY-MM-DD>-<pid>.jsonl`, one file per
  UTC day and serving process so that workers never interleave their writes; each write is
  fsync'd (directory.py);
- a database URL (`sqlite:///logs/predictions.db`, `postgresql://user@host/db`): tables
  `predictions` and `feedback`, created on first use (SQLAlchemy; sql.py).

While the sink fails (a database restarting, a network cut), records go to the spool instead
(`serving.prediction_spool`, `PREDICTION_SPOOL` overrides it): fsync'd JSON lines files on disk
(the pod's own volume, or one its replicas share), replayed into the sink when it answers
again, and at the next start after a crash, by this process or another (spool.py). With
`PREDICTION_SPOOL_MAX_BYTES` a spool that would pass that size refuses instead (SpoolFull: the
request gets a 503). A replay never duplicates a record: the SQL sink skips records it already
holds, the directory sink's readers drop repeated ones. An append that fails (a full disk)
leaves nothing behind: the log holds exactly what was answered.

The log holds personal data: its directories are created 0700, its files (and an SQLite
database) 0600, whatever the umask; `redact` (decided_records) keeps what schema.yaml says the
log keeps of each request; `python -m <package> purge` deletes what is older than
`monitor.retention_days` from the sink and the spool (retention.py).

Record layout, the same in every sink (labels are text, compared as text like the pipeline does;
timestamps are UTC ISO 8601 text, so text order is time order):

    predictions: prediction_id  uuid4, as text
                 timestamp      UTC, ISO 8601 text
                 model_version  the BentoML model tag that answered, e.g. `name:version`
                 features       the request record as the log keeps it (redacted), an object
                                keyed by feature name (a JSON text column in SQL)
                 label          the decision: the predicted label, or the number
                 probability    binary: the probability of the positive class (else empty)
                 outputs        the model's other outputs, an object keyed by column name as
                                the task names them (several classes: each one's
                                probability, `probability[<class>]`); empty for the others
                                (a JSON text column in SQL, added to an older table)
                 simulated      true for traffic made by `make simulate`
                 batch          true for rows scored by `make predict` (batch scoring)
                 caller         who asked: the token's name; `batch` for batch scoring,
                                `simulator` for `make simulate`; empty in older records
                 explained      true for decisions answered by /explain (monitoring can leave
                                them out of its window); false in older records
    feedback:    prediction_id  the prediction the label belongs to (one label each)
                 timestamp      when the feedback arrived
                 label          the true label
                 labeller       who sent it: the token's name; empty in older records

Columns newer than a table are added to it (SQL). `prediction_record()` and `feedback_record()`
build records (records.py). `read_predictions()` returns one row per prediction with `features`
and `outputs` spread into a column per key; `read_feedback()` one row per feedback record. Both
return `timestamp` as a UTC datetime. `join_feedback()` gives each prediction its newest true
label and counts the feedback that matches no prediction.

Feedback cannot be poisoned silently: the writer refuses a label for a prediction id the log
never recorded (`UnknownPrediction`: not in the sink, nor waiting in a spool file here) and a
second label for a prediction (`AlreadyLabelled`), both `FeedbackRefused`. It checks each group
commit's ids at once: the SQL sink with keyed queries (and a unique index on
feedback.prediction_id), the directory sink and the spool from an index of the ids they hold,
kept up to date by reading only what was appended since.

A location may name environment variables as `${NAME}` (a database password, say), filled in
when the sink opens.
"""

from .directory import DirectorySink
from .location import (
    ENV_VAR,
    FILE_ENV_VAR,
    SPOOL_ENV_VAR,
    SPOOL_MAX_BYTES_ENV_VAR,
    open_sink,
    open_spool,
)
from .records import (
    COLUMNS,
    IDENTITY,
    Redact,
    Table,
    decided_records,
    feedback_record,
    prediction_record,
    utc_now,
)
from .retention import Purged, purge, retention_cutoff
from .sink import PredictionSink, join_feedback
from .spool import Spool, SpoolFull
from .sql import SqlSink
from .writer import (
    AlreadyLabelled,
    FeedbackRefused,
    LogUnavailable,
    PredictionLog,
    Receipt,
    UnknownPrediction,
)

__all__ = [
    "COLUMNS",
    "ENV_VAR",
    "FILE_ENV_VAR",
    "IDENTITY",
    "SPOOL_ENV_VAR",
    "SPOOL_MAX_BYTES_ENV_VAR",
    "AlreadyLabelled",
    "DirectorySink",
    "FeedbackRefused",
    "LogUnavailable",
    "PredictionLog",
    "PredictionSink",
    "Purged",
    "Receipt",
    "Redact",
    "Spool",
    "SpoolFull",
    "SqlSink",
    "Table",
    "UnknownPrediction",
    "decided_records",
    "feedback_record",
    "join_feedback",
    "open_sink",
    "open_spool",
    "prediction_record",
    "purge",
    "retention_cutoff",
    "utc_now",
]
