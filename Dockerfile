FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg espeak-ng sox libsndfile1 make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN python -m venv .venv && .venv/bin/pip install -q 'setuptools<81' \
    && .venv/bin/pip install -q --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && .venv/bin/pip install -q -c constraints.txt -e '.[voice]' \
    && .venv/bin/pip install -q -c constraints.txt --no-deps openai-whisper==20250625
ENV PATH=/app/.venv/bin:$PATH
CMD ["python", "run.py"]
