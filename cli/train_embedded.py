"""Train Easel's embedded default model from a seed and save it as a diffusers StableDiffusionPipeline.

Stage 1 trains the VAE on drawn shapes; stage 2 freezes it and trains the text encoder and UNet jointly
(v-prediction on a zero-terminal-SNR schedule, 10% empty prompts for classifier-free guidance, EMA of the UNet).
Every batch is drawn from an RNG seeded by (seed, stage, step), so a run resumed from a checkpoint in `.train/`
sees exactly the data and noise an uninterrupted run would have seen.

    venv/bin/python cli/train_embedded.py --out models/Stable-diffusion/easel-shapes-v1
    venv/bin/python cli/train_embedded.py --out models/Stable-diffusion/easel-shapes-v1 --export-only
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.embedded import architecture, shapes  # noqa: E402
from tools.embedded.tokenizer import write_tokenizer  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "models" / "Stable-diffusion" / "easel-shapes-v1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="pipeline folder to write")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / ".train" / "easel-shapes-v1",
                        help="checkpoints and logs (gitignored)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vae-steps", type=int, default=600)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--vae-lr", type=float, default=2e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-5)
    parser.add_argument("--steps", type=int, default=4000, help="text encoder + UNet steps")
    parser.add_argument("--decay-start", type=int, default=2600,
                        help="UNet LR is constant after warmup until this step, then cosine-decays to --steps "
                             "(-1: never); a run can stop at any checkpoint before it and resume unchanged")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--restarts", type=parse_restarts,
                        default=parse_restarts("500:3e-4,2000:4e-4,1500:3e-4,1200:2.5e-4,4800:4e-4"),
                        help="warm-restarted cosine cycles after --steps, as STEPS:PEAK_LR,... (total steps = "
                             "--steps + the cycles' steps)")
    parser.add_argument("--decoder-steps", type=int, default=800,
                        help="VAE decoder refinement steps with the encoder frozen (the latent space, and so the "
                             "UNet, is unaffected; it sharpens the decoded edges)")
    parser.add_argument("--decoder-batch", type=int, default=32)
    parser.add_argument("--decoder-lr", type=float, default=1e-3)
    parser.add_argument("--stage", choices=("all", "vae", "decoder", "unet"), default="all",
                        help="run one stage only (the decoder and UNet stages are independent and may run at once)")
    parser.add_argument("--mismatch", type=float, default=0.2,
                        help="share of low-noise samples (timestep < --mismatch-below) trained with another "
                             "picture's prompt: the image decides at low noise, which keeps img2img at low "
                             "strength from repainting the init image's colours")
    parser.add_argument("--mismatch-below", type=int, default=250)
    parser.add_argument("--mismatch-from", type=int, default=4900, help="first step that uses --mismatch")
    parser.add_argument("--omit-colour", type=float, default=0.15,
                        help="share of prompts that leave the shape's colour unsaid (any colour fits them)")
    parser.add_argument("--omit-colour-from", type=int, default=5100, help="first step that uses --omit-colour")
    parser.add_argument("--mismatch-keeps-shape-from", type=int, default=9200,
                        help="from this step a mismatched prompt keeps the picture's shape and size words and only "
                             "changes colours (before it, it could name another shape, which taught the model to "
                             "doubt the shape word at low noise, where small squares get their corners)")
    parser.add_argument("--grow-attention-at", type=int, default=9200,
                        help="the step at which the UNet gains its 16x16 transformers (zero-initialised, so the "
                             "model's function is unchanged at that step; 0: the full layout from the start)")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--ema-decay", type=float, default=0.998)
    parser.add_argument("--dropout", type=float, default=0.1, help="share of empty prompts (for CFG)")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--export-only", action="store_true", help="export the latest checkpoint and stop")
    parser.add_argument("--stop-after", type=int, default=0, help="stop stage 2 at this step (0: run to the end)")
    return parser.parse_args(argv)


def parse_restarts(text: str) -> list[tuple[int, float]]:
    cycles = []
    for part in filter(None, (item.strip() for item in text.split(","))):
        steps, _, peak = part.partition(":")
        cycles.append((int(steps), float(peak)))
    return cycles


def total_unet_steps(args: argparse.Namespace) -> int:
    return int(args.steps + sum(steps for steps, _ in args.restarts))


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float = 0.05) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def unet_lr(step: int, args: argparse.Namespace) -> float:
    """Linear warmup, constant, then a cosine decay over [decay_start, steps], then an optional second cycle."""
    if step >= args.steps:
        offset = step - args.steps
        for length, peak in args.restarts:
            if offset < length:
                return cosine_lr(offset, length, peak, 0)
            offset -= length
        return cosine_lr(1, 1, args.restarts[-1][1] if args.restarts else args.lr, 0)
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.decay_start < 0 or step < args.decay_start:
        return args.lr
    return cosine_lr(step - args.decay_start, args.steps - args.decay_start, args.lr, 0)


def has_full_attention(done: int, args: argparse.Namespace) -> bool:
    """Whether a UNet checkpoint saved after ``done`` steps has 16x16 attention (it grows as step
    ``--grow-attention-at`` begins)."""
    return args.grow_attention_at == 0 or done > args.grow_attention_at


def carry_optimizer_state(old: dict[str, Any], old_names: list[str], new_names: list[str]) -> dict[str, Any]:
    """An optimizer state dict for parameters ``new_names`` holding the moments of those also in ``old_names``."""
    index = {name: position for position, name in enumerate(old_names)}
    state = {new: old["state"][index[name]] for new, name in enumerate(new_names)
             if name in index and index[name] in old["state"]}
    groups = [{**old["param_groups"][0], "params": list(range(len(new_names)))}]
    return {"state": state, "param_groups": groups}


def step_rng(seed: int, stage: int, step: int) -> tuple[random.Random, torch.Generator]:
    """Data and noise for one step depend only on (seed, stage, step): resuming reproduces them exactly."""
    key = (seed * 1_000_003 + stage) * 10_000_019 + step
    return random.Random(key), torch.Generator().manual_seed(key % (2**63))


def atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def read_state(work: Path) -> dict[str, Any]:
    path = work / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(work: Path, state: dict[str, Any], name: str = "state.json") -> None:
    tmp = work / f"{name}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(work / name)


def log(work: Path, message: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {message}"
    tqdm.write(line)
    with (work / "train.log").open("a") as handle:
        handle.write(line + "\n")


class Checkpointer:
    """Saves one stage's weights, optimizer and progress (step and seconds in its state file), each atomically."""

    def __init__(self, work: Path, state: dict[str, Any], state_name: str, step_key: str, seconds_key: str) -> None:
        self.work, self.state, self.state_name = work, state, state_name
        self.step_key, self.seconds_key = step_key, seconds_key
        self.began = time.time()

    def save(self, done: int, weights: dict[str, dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer,
             optimizer_name: str, message: str) -> None:
        for name, tensors in weights.items():
            atomic_save(tensors, self.work / name)
        atomic_torch_save(optimizer.state_dict(), self.work / optimizer_name)
        now = time.time()
        self.state[self.step_key] = done
        self.state[self.seconds_key] = self.state.get(self.seconds_key, 0.0) + now - self.began
        self.began = now
        write_state(self.work, self.state, self.state_name)
        log(self.work, message)


# ---------------------------------------------------------------- stage 1: VAE


def train_vae(args: argparse.Namespace, work: Path, state: dict[str, Any]) -> None:
    torch.manual_seed(args.seed)
    vae = architecture.build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    start = state.get("vae_step", 0)
    if start >= args.vae_steps and (work / "vae.safetensors").exists():
        return
    if start > 0:
        vae.load_state_dict(load_file(str(work / "vae_ckpt.safetensors")))
        optimizer.load_state_dict(torch.load(work / "vae_opt.pt", weights_only=True))
    vae.train()
    bar = tqdm(range(start, args.vae_steps), desc="vae", initial=start, total=args.vae_steps, mininterval=20)
    checkpointer = Checkpointer(work, state, "state.json", "vae_step", "vae_seconds")
    for step in bar:
        rng, gen = step_rng(args.seed, 1, step)
        _, images = shapes.random_batch(rng, args.vae_batch)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, args.vae_steps, args.vae_lr, 50)
        posterior = vae.encode(images).latent_dist
        latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(latents).sample
        rec_loss = F.mse_loss(recon, images) + F.l1_loss(recon, images)
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = rec_loss + args.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        bar.set_postfix(rec=f"{rec_loss.item():.4f}", kl=f"{kl.item():.2f}", refresh=False)
        done = step + 1
        if done % args.checkpoint_every == 0 or done == args.vae_steps:
            checkpointer.save(done, {"vae_ckpt.safetensors": vae.state_dict()}, optimizer, "vae_opt.pt",
                              f"vae step {done} rec {rec_loss.item():.4f} kl {kl.item():.3f}")
    # The latent scale that gives the diffusion model unit-variance inputs, measured on fresh drawings.
    vae.eval()
    with torch.no_grad():
        rng, gen = step_rng(args.seed, 3, 0)
        _, images = shapes.random_batch(rng, 256)
        std = vae.encode(images).latent_dist.sample(generator=gen).std().item()
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    atomic_save(vae.state_dict(), work / "vae.safetensors")
    (work / "vae_config.json").write_text(json.dumps(dict(vae.config), indent=2, default=str))
    state["vae_scaling_factor"] = round(1.0 / std, 5)
    write_state(work, state)
    log(work, f"vae done, latent std {std:.4f}")


def load_trained_vae(work: Path, state: dict[str, Any], refined: bool = False) -> Any:
    """The stage-1 VAE; with ``refined``, its decoder replaced by the stage-1b one where that stage has run."""
    vae = architecture.build_vae()
    vae.load_state_dict(load_file(str(work / "vae.safetensors")))
    decoder = work / "vae_decoder.safetensors"
    if refined and decoder.exists():
        vae.load_state_dict(load_file(str(decoder)), strict=False)
    vae.register_to_config(scaling_factor=state["vae_scaling_factor"])
    vae.eval().requires_grad_(False)
    return vae


# ---------------------------------------------------------------- stage 1b: decoder refinement


def decoder_parameters(vae: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in vae.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}


def train_decoder(args: argparse.Namespace, work: Path) -> None:
    """Refine the decoder on latents of the frozen encoder: sharper corners, same latent space.

    Stage 1 stops when reconstructions are good enough to train on, but its soft corners cap how well any UNet
    can draw squares and triangles. The encoder (and with it the latent space the UNet learns) stays fixed, so
    this stage is independent of stage 2. Its progress lives in ``decoder_state.json`` so that both can run at
    the same time.
    """
    state_path = work / "decoder_state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    start = state.get("step", 0)
    if start >= args.decoder_steps:
        return
    vae = load_trained_vae(work, read_state(work))
    if start > 0:
        vae.load_state_dict(load_file(str(work / "vae_decoder.safetensors")), strict=False)
    trainable = [p for name, p in vae.named_parameters() if name.startswith(("decoder.", "post_quant_conv."))]
    for param in trainable:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(trainable, lr=args.decoder_lr, weight_decay=0.0)
    if start > 0:
        optimizer.load_state_dict(torch.load(work / "vae_decoder_opt.pt", weights_only=True))
    vae.decoder.train()
    bar = tqdm(range(start, args.decoder_steps), desc="decoder", initial=start, total=args.decoder_steps,
               mininterval=20)
    checkpointer = Checkpointer(work, state, state_path.name, "step", "seconds")
    for step in bar:
        rng, gen = step_rng(args.seed, 4, step)
        _, images = shapes.random_batch(rng, args.decoder_batch)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, args.decoder_steps, args.decoder_lr, 50)
        with torch.no_grad():
            posterior = vae.encode(images).latent_dist
            latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(latents).sample
        loss = F.mse_loss(recon, images) + F.l1_loss(recon, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        bar.set_postfix(rec=f"{loss.item():.4f}", refresh=False)
        done = step + 1
        if done % args.checkpoint_every == 0 or done == args.decoder_steps:
            checkpointer.save(done, {"vae_decoder.safetensors": decoder_parameters(vae)}, optimizer,
                              "vae_decoder_opt.pt", f"decoder step {done} rec {loss.item():.4f}")


# ---------------------------------------------------------------- stage 2: text encoder + UNet


def load_tokenizer(work: Path) -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_tokenizer(work / "tokenizer")))


def build_text_encoder(tokenizer: Any) -> Any:
    return architecture.build_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)


def train_diffusion(args: argparse.Namespace, work: Path, state: dict[str, Any]) -> None:
    vae = load_trained_vae(work, state)
    scale = vae.config.scaling_factor
    tokenizer = load_tokenizer(work)
    torch.manual_seed(args.seed + 1)
    text_encoder = build_text_encoder(tokenizer)
    unet = architecture.build_unet(full_resolution_attention=False)
    start = state.get("step", 0)
    if has_full_attention(start, args):
        # The step-0 layout is built first either way, so that the text encoder and the rest of the UNet draw the
        # same initial weights from the seed whichever step the run grows at.
        unet = architecture.grow_full_resolution_attention(unet)
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = architecture.build_training_scheduler()

    def named_params() -> tuple[list[str], list[torch.nn.Parameter]]:
        named = [(f"unet.{n}", p) for n, p in unet.named_parameters()]
        named += [(f"text_encoder.{n}", p) for n, p in text_encoder.named_parameters()]
        return [n for n, _ in named], [p for _, p in named]

    names, params = named_params()
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    if start > 0:
        unet.load_state_dict(load_file(str(work / "unet_ckpt.safetensors")))
        ema.load_state_dict(load_file(str(work / "unet_ema.safetensors")))
        text_encoder.load_state_dict(load_file(str(work / "text_encoder.safetensors")))
        optimizer.load_state_dict(torch.load(work / "opt.pt", weights_only=True))
    unet.train()
    text_encoder.train()
    ids_cache: dict[str, torch.Tensor] = {}

    def encode_ids(prompts: list[str]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in ids_cache]
        if missing:
            ids = tokenizer(missing, padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
            ids_cache.update(zip(missing, ids, strict=True))
        return torch.stack([ids_cache[p] for p in prompts])

    alphas = scheduler.alphas_cumprod
    total = total_unet_steps(args)
    end = total if args.stop_after <= 0 else min(total, args.stop_after)
    bar = tqdm(range(start, end), desc="unet", initial=start, total=total, mininterval=20)
    checkpointer = Checkpointer(work, state, "state.json", "step", "unet_seconds")
    running = 0.0
    for step in bar:
        if step == args.grow_attention_at and step > 0:
            unet = architecture.grow_full_resolution_attention(unet).train()
            ema = architecture.grow_full_resolution_attention(ema).requires_grad_(False)
            old_names, old_state = names, optimizer.state_dict()
            names, params = named_params()
            optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
            optimizer.load_state_dict(carry_optimizer_state(old_state, old_names, names))
            log(work, f"unet step {step}: grew 16x16 attention ({sum(p.numel() for p in unet.parameters())} params)")
        rng, gen = step_rng(args.seed, 2, step)
        specs, images = shapes.random_batch(rng, args.batch)
        prompts = ["" if rng.random() < args.dropout else shapes.prompt_for(s) for s in specs]
        if step >= args.omit_colour_from and args.omit_colour > 0:
            prompts = [shapes.prompt_for(s, with_colour=False) if p and rng.random() < args.omit_colour else p
                       for s, p in zip(specs, prompts, strict=True)]
        with torch.no_grad():
            posterior = vae.encode(images).latent_dist
            latents = (posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)) * scale
        noise = torch.randn(latents.shape, generator=gen)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), generator=gen)
        if step >= args.mismatch_from and args.mismatch > 0:
            for index, t in enumerate(timesteps.tolist()):
                if prompts[index] and t < args.mismatch_below and rng.random() < args.mismatch:
                    other = shapes.random_spec(rng)
                    if step >= args.mismatch_keeps_shape_from:
                        other = dataclasses.replace(other, shape=specs[index].shape, size=specs[index].size)
                    prompts[index] = shapes.prompt_for(other)
        a = alphas[timesteps].sqrt().view(-1, 1, 1, 1)
        s = (1 - alphas[timesteps]).sqrt().view(-1, 1, 1, 1)
        noisy = a * latents + s * noise
        target = a * noise - s * latents  # v-prediction
        for group in optimizer.param_groups:
            group["lr"] = unet_lr(step, args)
        hidden = text_encoder(encode_ids(prompts))[0]
        pred = unet(noisy, timesteps, hidden).sample
        loss = F.mse_loss(pred, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema_param, param in zip(ema.parameters(), unet.parameters(), strict=True):
                ema_param.lerp_(param, 1 - decay)
        running = 0.98 * running + 0.02 * loss.item() if step > start else loss.item()
        bar.set_postfix(loss=f"{running:.4f}", refresh=False)
        done = step + 1
        if done % args.checkpoint_every == 0 or done == end:
            weights = {"unet_ckpt.safetensors": unet.state_dict(), "unet_ema.safetensors": ema.state_dict(),
                       "text_encoder.safetensors": text_encoder.state_dict()}
            checkpointer.save(done, weights, optimizer, "opt.pt",
                              f"unet step {done} loss {running:.4f} lr {optimizer.param_groups[0]['lr']:.2e}")


# ---------------------------------------------------------------- export


def export(args: argparse.Namespace, work: Path, state: dict[str, Any]) -> Path:
    """Assemble the latest checkpoint (EMA UNet) into a StableDiffusionPipeline folder."""
    from diffusers import StableDiffusionPipeline

    vae = load_trained_vae(work, state, refined=True)
    tokenizer = load_tokenizer(work)
    text_encoder = build_text_encoder(tokenizer)
    text_encoder.load_state_dict(load_file(str(work / "text_encoder.safetensors")))
    unet = architecture.build_unet(full_resolution_attention=has_full_attention(state.get("step", 0), args))
    unet.load_state_dict(load_file(str(work / "unet_ema.safetensors")))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=architecture.build_inference_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(out), safe_serialization=True)
    # Ship the CLIP-format files our builder writes (vocab.json + merges.txt), the layout SD checkpoints have,
    # as the tokenizer's single source of truth.
    (out / "tokenizer" / "tokenizer.json").unlink(missing_ok=True)
    write_tokenizer(out / "tokenizer")
    meta = {
        "seed": args.seed,
        "vae_steps": state.get("vae_step", 0),
        "unet_steps": state.get("step", 0),
        "planned_unet_steps": total_unet_steps(args),
        "decoder_steps": json.loads((work / "decoder_state.json").read_text()).get("step", 0)
        if (work / "decoder_state.json").exists() else 0,
        "batch": args.batch,
        "vae_seconds": round(state.get("vae_seconds", 0.0)),
        "unet_seconds": round(state.get("unet_seconds", 0.0)),
    }
    (out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
    log(work, f"exported step {meta['unet_steps']} to {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    state = read_state(work)
    if not args.export_only:
        state.setdefault("args", {k: str(v) for k, v in vars(args).items()})
        if args.stage in ("all", "vae"):
            train_vae(args, work, state)
        if args.stage in ("all", "decoder"):
            train_decoder(args, work)
        if args.stage in ("all", "unet"):
            train_diffusion(args, work, read_state(work))
        state = read_state(work)
        if args.stage in ("vae", "decoder"):
            return 0
    if state.get("step", 0) == 0:
        print("no UNet checkpoint to export yet", file=sys.stderr)
        return 1
    export(args, work, state)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
