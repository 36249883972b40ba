"""vistune.data_prep: records from any dataset format, exact chat-template masking, images, batching, checks.

The training room uses: load_records -> VisualInstructDataset (tokenised with a Template) -> DataCollator,
optionally with LengthGroupedSampler; every skipped record lands in a SkipLog (`skipped.jsonl`).
"""

from vistune.data_prep.batching.collate import DataCollator
from vistune.data_prep.batching.dataset import VisualInstructDataset
from vistune.data_prep.batching.sampler import LengthGroupedSampler
from vistune.data_prep.images import ASPECTS, ImageTransform, expand_to_square, load_image, resolve_image_path
from vistune.data_prep.records import PROBLEMS, Record, RecordError, Turn
from vistune.data_prep.records.readers import FORMATS, DataFileError, load_records
from vistune.data_prep.records.skips import Skip, SkipLog
from vistune.data_prep.synth import synthesize
from vistune.data_prep.text.templates import TEMPLATES, Rendered, Template, get_template, record_from_messages
from vistune.data_prep.text.tokenize import TokenizedRecord, tokenize_record, tokenize_records

__all__ = [
    "ASPECTS", "FORMATS", "PROBLEMS", "TEMPLATES", "DataCollator", "DataFileError", "ImageTransform",
    "LengthGroupedSampler", "Record", "RecordError", "Rendered", "Skip", "SkipLog", "Template", "TokenizedRecord",
    "Turn", "VisualInstructDataset", "expand_to_square", "get_template", "load_image", "load_records",
    "record_from_messages", "resolve_image_path", "synthesize", "tokenize_record",
    "tokenize_records",
]
