"""ASVspoof-style corpus builder: real speech in, LA19-like corpus with TTS / vocoder / VC spoofs out."""
from .build import CorpusCard, CorpusConfig, CorpusError, list_configs, load_config, prepare_corpus

__all__ = ["CorpusCard", "CorpusConfig", "CorpusError", "list_configs", "load_config", "prepare_corpus"]
