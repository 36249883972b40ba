"""Text: conversation templates that record the reply spans, tokenising with exact label masks, a model's text side."""

from vistune.data_prep.text.templates import TEMPLATES, Rendered, Template, get_template, record_from_messages
from vistune.data_prep.text.tokenize import TokenizedRecord, tokenize_record, tokenize_records

__all__ = [
    "TEMPLATES", "Rendered", "Template", "TokenizedRecord", "get_template", "record_from_messages", "tokenize_record",
    "tokenize_records",
]
