"""DDAVS in plain PyTorch.

ddavs.py assembles the network (`build_model(cfg) -> DDAVS`) from: mit.py (visual encoder),
audio_encoder.py (audio encoders and their in-graph log-mel front-end), aqm.py (Q-Former queries
and bank refinement), com.py (contrastive loss, training only), avam.py (cross alignment blocks
and the baseline fusion), decoder.py (all-MLP head). checkpoint.py saves and loads checkpoint
folders, official_mit.py / official_audio.py load the public pretrained weights, info.py is
`ddavs-rt model-info`. Nothing is imported here so that `import ddavs_rt.model.x` stays cheap.
"""
