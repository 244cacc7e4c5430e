"""FADE (Clarity, Responsiveness, Purity, Faithfulness), one of the evaluate stage's scorers.

`pipeline` runs it over a descriptions table; `results` keeps each feature's result on disk so a run
resumes. The per-score modules (`clarity`, `responsiveness`, `faithfulness`) do the LLM and model work
and hand arrays to `metrics`, the pure formulas; `sampling` picks the natural samples to rate. The stage's
API (`harness.evaluate`) re-exports what callers need; this package imports nothing at import, so
`harness.evaluate.fade._metrics` alone stays light.
"""
