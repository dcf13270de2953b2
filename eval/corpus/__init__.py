"""ASVspoof-style corpus builder: real speech in, LA19-like corpus with TTS / vocoder / VC spoofs out."""
from .build import SPLIT_COLUMNS, CorpusCard, CorpusConfig, CorpusError, list_configs, load_config, prepare_corpus

__all__ = ["SPLIT_COLUMNS", "CorpusCard", "CorpusConfig", "CorpusError", "list_configs", "load_config", "prepare_corpus"]
