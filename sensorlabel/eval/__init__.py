"""Evaluation: tracking metrics (CLEAR MOT, sAMOTA/AMOTA/AMOTP, HOTA) and KITTI's filtering rules."""

from sensorlabel.eval.mot import ClearCounts, SequenceData, amota, clear_counts, clear_mot, hota, recall_thresholds

__all__ = ["ClearCounts", "SequenceData", "amota", "clear_counts", "clear_mot", "hota", "recall_thresholds"]
