"""Generated test media and the measurements the voice tests assert on.

Nothing here is a binary checked into git: speech comes from espeak-ng, music and vowels are
synthesised with numpy, video comes from ffmpeg's lavfi test sources. Every generator is
deterministic (fixed seeds, fixed texts), so a failing measurement reproduces.

The f0 estimator is a small YIN written here on purpose: measuring pyworld's output with
pyworld would grade the engine with its own analysis, and librosa's yin/pyin spend ~17 s
compiling with numba on first use.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy import signal

ESPEAK_RATE = 22050

TEXTS = (
    "Content Fabric takes a video, changes the voice, and posts it. Long recordings are cut "
    "into chunks at quiet places, and every chunk carries one second of context on each side.",
    "Workers convert the chunks in parallel. An aggregator puts them back together with a "
    "short crossfade at each cut, so nobody hears where one chunk ended and the next began.",
    "The weather today is calm, with light wind from the west and a few clouds over the hills. "
    "Tomorrow will be warmer, and the evening should stay dry.",
    "Numbers are good test material: one, two, three, four, five, six, seven, eight, nine, ten, "
    "eleven, twelve, thirteen, fourteen, fifteen, sixteen.",
    "She sells sea shells by the sea shore. Peter Piper picked a peck of pickled peppers. How "
    "much wood would a woodchuck chuck if a woodchuck could chuck wood?",
)


def espeak(text: str, *, voice: str = "en", pitch: int = 50, speed: int = 160) -> np.ndarray:
    """Mono float64 speech at 22 050 Hz from espeak-ng (written to a file: its --stdout WAV
    header carries no length)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav), text],
            check=True,
            capture_output=True,
        )
        data, rate = sf.read(str(wav), dtype="float64")
    assert rate == ESPEAK_RATE
    return np.asarray(data)


def speech(seconds: float, sr: int) -> np.ndarray:
    """``seconds`` of English speech at ``sr``: the texts spoken with varying pitch and voice,
    concatenated with their natural pauses, peak-normalised to 0.5."""
    parts: list[np.ndarray] = []
    total = 0
    k = 0
    while total < seconds * ESPEAK_RATE:
        text = TEXTS[k % len(TEXTS)]
        voice = ("en", "en-us", "en-gb-x-rp")[k % 3]
        part = espeak(text, voice=voice, pitch=35 + (k * 11) % 40, speed=150 + (k * 7) % 30)
        parts.append(part)
        total += len(part)
        k += 1
    x = np.concatenate(parts)
    if sr != ESPEAK_RATE:
        x = soxr.resample(x, ESPEAK_RATE, sr)
    x = x[: round(seconds * sr)]
    return 0.5 * x / np.abs(x).max()


def music(seconds: float, sr: int, seed: int = 7) -> np.ndarray:
    """A chord progression with plucked envelopes and noise hi-hats, peak 1.0, mono."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    out = np.zeros(n)
    beat = 0.5
    roots = (220.0, 246.94, 196.0, 174.61)
    t = np.arange(round(beat * 2 * sr)) / sr
    env = np.minimum(1.0, t / 0.01) * np.exp(-t * 2.5)
    for k, start in enumerate(np.arange(0.0, seconds, beat * 2)):
        i = round(start * sr)
        root = roots[(k // 2) % len(roots)]
        note = np.zeros_like(t)
        for ratio, amp in ((1.0, 1.0), (1.26, 0.7), (1.5, 0.6), (2.0, 0.3)):
            note += amp * np.sin(2 * np.pi * root * ratio * t + rng.uniform(0, 2 * np.pi))
        m = min(len(t), n - i)
        out[i : i + m] += (note * env)[:m]
    hat_n = round(0.03 * sr)
    hat = rng.standard_normal(hat_n) * np.exp(-np.arange(hat_n) / (0.005 * sr))
    for start in np.arange(0.25, seconds, beat):
        i = round(start * sr)
        m = min(hat_n, n - i)
        out[i : i + m] += 0.3 * hat[:m]
    return out / np.abs(out).max()


FORMANTS = ((700.0, 80.0), (1220.0, 90.0), (2600.0, 120.0), (3300.0, 150.0))


def vowel(seconds: float, sr: int, f0: float = 140.0, glide: float = 1.25) -> np.ndarray:
    """A sung /a/: a glottal-like pulse train gliding from ``f0`` to ``f0 * glide`` with 5 Hz
    vibrato, through four formant resonators. Fully voiced: every frame has a true f0."""
    n = round(seconds * sr)
    t = np.arange(n) / sr
    contour = f0 * glide ** (t / seconds) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = np.cumsum(contour) / sr
    saw = 2 * (phase % 1.0) - 1
    src = signal.lfilter([1.0], [1.0, -0.97], np.diff(saw, prepend=saw[0]) * -1)
    x = src
    for freq, bw in FORMANTS:
        r = np.exp(-np.pi * bw / sr)
        a = [1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r]
        x = signal.lfilter([1.0 - r], a, x)
    x = x * np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    return 0.5 * x / np.abs(x).max()


def yin(x: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 600.0) -> np.ndarray:
    """f0 per 10 ms frame (NaN where unvoiced) by YIN: cumulative-mean-normalised
    difference, absolute threshold 0.1, parabolic interpolation of the chosen dip."""
    frame = int(2 * sr / fmin)
    hop = sr // 100
    lo, hi = int(sr / fmax), int(sr / fmin)
    x = np.asarray(x, dtype=np.float64)
    starts = range(0, len(x) - frame - hi, hop)
    out = np.full(len(starts), np.nan)
    for k, s in enumerate(starts):
        w = x[s : s + frame + hi]
        seg = w[:frame]
        if np.sqrt(np.mean(seg * seg)) < 1e-3:
            continue
        # d(tau) = sum (x[j] - x[j + tau])^2 for j < frame, via FFT cross-correlation
        energy = np.concatenate(([0.0], np.cumsum(w * w)))
        e0 = energy[frame]
        taus = np.arange(hi + 1)
        e_tau = energy[taus + frame] - energy[taus]
        size = 1 << int(np.ceil(np.log2(len(w) + frame)))
        corr = np.fft.irfft(np.fft.rfft(w, size) * np.conj(np.fft.rfft(seg, size)), size)
        d = e0 + e_tau - 2 * corr[: hi + 1]
        d[0] = 0.0
        cmnd = d[1:] * np.arange(1, hi + 1) / np.maximum(np.cumsum(d[1:]), 1e-12)
        cmnd = np.concatenate(([1.0], cmnd))
        below = np.flatnonzero(cmnd[lo:hi] < 0.1)
        if len(below) == 0:
            continue
        tau = lo + below[0]
        while tau + 1 < hi and cmnd[tau + 1] < cmnd[tau]:
            tau += 1
        a, b, c = cmnd[tau - 1], cmnd[tau], cmnd[tau + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if abs(denom) > 1e-12 else 0.0
        out[k] = sr / (tau + shift)
    return out


def spectral_envelope(
    x: np.ndarray, sr: int, lifter_ms: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Mean cepstrally smoothed log spectrum (dB) over the louder frames: harmonics (ripple at
    quefrency 1/f0 >= 2.5 ms) are liftered away, the formant envelope stays.
    Returns (frequencies, envelope_db)."""
    n = 2048
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(x, dtype=np.float64), n)[:: n // 4]
    rms = np.sqrt(np.mean(frames**2, axis=1))
    frames = frames[rms > 0.1 * rms.max()] * np.hanning(n)
    logmag = np.log(np.abs(np.fft.rfft(frames, axis=1)) + 1e-9)
    cep = np.fft.irfft(logmag, n, axis=1)
    cut = int(lifter_ms * sr / 1000)
    cep[:, cut : n - cut] = 0.0
    env = np.fft.rfft(cep, axis=1).real.mean(axis=0) * (20 / np.log(10))
    return np.fft.rfftfreq(n, 1 / sr), env


def envelope_shift_semitones(x: np.ndarray, y: np.ndarray, sr: int) -> float:
    """How far (in semitones) the spectral envelope of ``y`` sits above that of ``x``: the lag
    maximising the cross-correlation of their envelopes on a 1/16-semitone log-frequency
    axis from 300 Hz to 4 kHz (where the formants are), searched over +-12 semitones."""
    steps = 16  # per semitone
    grid = 300.0 * 2 ** (np.arange(0, 12 * np.log2(4000 / 300) * steps) / (12 * steps))
    fx, ex = spectral_envelope(x, sr)
    fy, ey = spectral_envelope(y, sr)
    gx = np.interp(grid, fx, ex)
    ext = 12 * steps
    wide = 300.0 * 2 ** (np.arange(-ext, len(grid) + ext) / (12 * steps))
    gy_wide = np.interp(wide, fy, ey)
    gx = gx - gx.mean()
    scores = []
    for lag in range(-ext, ext + 1):
        seg = gy_wide[ext + lag : ext + lag + len(grid)]
        seg = seg - seg.mean()
        scores.append(float(np.dot(gx, seg) / (np.linalg.norm(gx) * np.linalg.norm(seg) + 1e-12)))
    return float((int(np.argmax(scores)) - ext) / steps)


def short_rms_db(x: np.ndarray, centre: int, window: int) -> float:
    seg = x[max(0, centre - window // 2) : centre + window - window // 2]
    return float(10 * np.log10(np.mean(seg.astype(np.float64) ** 2) + 1e-20))


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), both mono, same length."""
    ref = reference - reference.mean()
    est = estimate - estimate.mean()
    alpha = np.dot(est, ref) / max(np.dot(ref, ref), 1e-20)
    target = alpha * ref
    noise = est - target
    return float(
        10 * np.log10(max(np.dot(target, target), 1e-20) / max(np.dot(noise, noise), 1e-20))
    )


def write_wav(path: Path, data: np.ndarray, sr: int, subtype: str = "FLOAT") -> Path:
    sf.write(str(path), np.asarray(data, dtype=np.float32), sr, subtype=subtype)
    return path


def make_video(
    path: Path, seconds: float, audio: Path | None = None, *, size: str = "160x120"
) -> Path:
    """A small H.264 MP4 from lavfi testsrc2, with ``audio`` (any file ffmpeg reads) as AAC."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi"]
    cmd += ["-i", f"testsrc2=size={size}:rate=10:duration={seconds}"]
    if audio is not None:
        cmd += ["-i", str(audio), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "128k"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-t", str(seconds)]
    cmd.append(str(path))
    subprocess.run(cmd, check=True, capture_output=True)
    return path
