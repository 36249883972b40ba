"""Records: the one record type, the readers of every dataset format, the writers, and the log of skipped records."""

from vistune.data_prep.records.readers import FORMATS, DataFileError, load_records
from vistune.data_prep.records.record import PROBLEMS, Record, RecordError, Turn
from vistune.data_prep.records.skips import Skip, SkipLog

__all__ = ["FORMATS", "PROBLEMS", "DataFileError", "Record", "RecordError", "Skip", "SkipLog", "Turn", "load_records"]
