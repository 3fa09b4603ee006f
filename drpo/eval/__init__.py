"""Evaluation: the paper's protocol (just-eval-instruct, five aspects 1-5, safety apart) on any model,
several aligned systems side by side, with bootstrap intervals, judge agreement and reports."""
