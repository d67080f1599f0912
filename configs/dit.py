"""DiT presets: `get_config("wan1_3b")` is Wan2.1-T2V-1.3B exactly; `get_config("tiny")` is the same
code at a size a 2-core CPU trains in minutes. Variants are comma-separated after the scale:

  get_config("wan1_3b")                 # T2V: 16 input channels, text cross-attention only
  get_config("wan1_3b,fun_control")     # Fun-Control: 48 input channels + the CLIP image branch
  get_config("wan1_3b,i2v")             # Wan2.1-I2V's layout: 36 input channels + the CLIP image branch
  get_config("tiny,camera")             # with the Plücker camera encoder
  get_config("tiny,control,camera")     # 48 channels without CLIP, camera encoder
  get_config("tiny,control,camera,turn_warp")  # + the first frame warped by each frame's turn: the
                                        # committed tiny teacher (worldscape_jax/assets/teacher_tiny)
  get_config("tiny,control,camera,ray_turn")   # + each pixel's ray turn in the camera input (experimental)

Every field `models.dit.DiTConfig` reads is declared here; `DiTConfig.from_config` refuses any other.
Stage configs embed this under `config.model`.
"""

from __future__ import annotations

import ml_collections

from worldscape_jax.configs.arguments import parse_arg


def _wan1_3b() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        dim=1536, ffn_dim=8960, freq_dim=256, num_heads=12, num_layers=30,
        patch_size=(1, 2, 2), in_dim=16, out_dim=16, text_dim=4096, text_len=512,
        eps=1e-6, rope_theta=10000.0,
        image_branch=False, clip_dim=1280, clip_tokens=257,
        frames_per_chunk=3,
        # The VAE's compression, which the camera encoder needs to align pixels with latents.
        vae_stride=(4, 8, 8),
    ))


def _tiny() -> ml_collections.ConfigDict:
    cfg = _wan1_3b()
    cfg.update(dict(
        dim=128, ffn_dim=384, freq_dim=64, num_heads=2, num_layers=4,
        text_dim=32, text_len=8, clip_dim=32, clip_tokens=4,
        frames_per_chunk=1,
        vae_stride=(4, 4, 4),  # the tiny VAE: 64x64 frames -> 16x16 latents -> 8x8 tokens per frame
    ))
    return cfg


SCALES = {"wan1_3b": _wan1_3b, "tiny": _tiny}
VARIANTS = ("fun_control", "i2v", "control", "camera", "ray_turn", "turn_warp", "bf16")


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    scale, variants = parse_arg(arg, "configs/dit.py", tuple(SCALES), VARIANTS)
    cfg = SCALES[scale]()
    cfg.camera = ml_collections.ConfigDict(dict(
        enabled=False, res_blocks=1,
        plucker_channels=6,  # per pixel and frame: [o x d, d]; 9 with ray_turn
        ray_turn=False,  # geometry.plucker.ray_turn: 3 more channels, how far each pixel's ray turned
        turn_warp=False,  # geometry.reprojection.turn_warp: the warped first frame on 16 more input channels
    ))
    cfg.attention_impl = "xla"
    cfg.remat_policy = "none"  # none | full | dots | save_attention
    # True: one scanned block (fast compile, params stacked on a leading 'layers' axis); False: unrolled
    # blocks_0 ... blocks_{L-1}, so `capture_intermediates` sees inside each block (models/dit.py).
    cfg.scan_layers = True
    cfg.dtype = "float32"  # compute dtype; parameters stay float32
    for variant in variants:
        if variant == "fun_control":  # Wan2.1-Fun-Control: 48 channels and the CLIP image branch
            cfg.in_dim = 3 * cfg.out_dim
            cfg.image_branch = True
        elif variant == "i2v":  # Wan2.1-I2V: 36 channels (noise, mask, image latent) and the CLIP image branch
            cfg.in_dim = 2 * cfg.out_dim + cfg.vae_stride[0]  # the mask: one channel per pixel frame of a latent
            cfg.image_branch = True
        elif variant == "control":  # the same 48-channel layout without CLIP (SynthWorld has no CLIP)
            cfg.in_dim = 3 * cfg.out_dim
        elif variant == "camera":
            cfg.camera.enabled = True
        elif variant == "ray_turn":
            cfg.camera.ray_turn = True
            cfg.camera.plucker_channels = 9
        elif variant == "turn_warp":
            cfg.camera.turn_warp = True
        elif variant == "bf16":
            cfg.dtype = "bfloat16"
    if cfg.camera.turn_warp:
        cfg.in_dim += cfg.out_dim
    return cfg
