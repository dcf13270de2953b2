"""Voiceprint risk: speaker-embedding backends, ASV-under-spoofing, watermark-identity and re-identification checks."""
from .checks import (AsvCheckResult, CompareResult, ReidResult, WatermarkRiskResult, asv_check, compare_clips,
                     corpus_asv_paths, read_asv_enrollment, read_asv_trials, reid_check, watermark_check)
from .embed import EmbeddingSet, embed_arrays, embed_files
from .embedders import EMBEDDERS, SpeakerEmbedder, load_embedder, list_embedders
from .labels import LabeledFile, labels_from_csv, labels_from_folder, labels_from_protocol

__all__ = ["AsvCheckResult", "CompareResult", "ReidResult", "WatermarkRiskResult", "asv_check", "compare_clips",
           "corpus_asv_paths", "read_asv_enrollment", "read_asv_trials", "reid_check", "watermark_check",
           "EmbeddingSet", "embed_arrays", "embed_files", "EMBEDDERS", "SpeakerEmbedder", "load_embedder",
           "list_embedders", "LabeledFile", "labels_from_csv", "labels_from_folder", "labels_from_protocol"]
