"""SynthAVS: the synthetic audio-visual segmentation benchmark (dataset writer and live scene).

- `classes`: the class table (appearance + sound recipe per class, look-alike / sound-alike pairs)
- `audio`:   time-pure sound voices, WAV encoding
- `render`:  textured backgrounds and shapes with exact label maps
- `scene`:   one 5-frame clip: plan, render, mix, label, tag (`generate_clip`)
- `writer`:  the AVS-Semantic layout on disk (`write_dataset`); `cli`: `ddavs-rt synth`
- `live`:    `LiveScene`, a continuous scene stepped frame by frame with ground truth
- `bench`:   clips/s and live step time, printed and written as JSON
"""
