"""The official `openai` client against a running `shardlab serve`.

    python openai_client.py BASE_URL API_KEY MODEL [CLIENTS]

Checks the model list, a chat completion, a streamed one whose joined
deltas equal it (temperature 0), the usage chunk, a completion, a
conversation whose second turn reuses the first one's KV cache, and
CLIENTS (default 16) clients at once whose greedy answers equal the same
prompts asked one at a time. Prints one line per check and `ok` at the
end; any failure raises.
"""

import sys
import threading

import openai

base_url, api_key, model = sys.argv[1], sys.argv[2], sys.argv[3]
clients = int(sys.argv[4]) if len(sys.argv) > 4 else 16
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600)

ids = [m.id for m in client.models.list().data]
assert ids == [model], ids
print("models", ids)

question = [{"role": "user", "content": "What is the capital of France?"}]
whole = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=24)
text = whole.choices[0].message.content
assert whole.choices[0].message.role == "assistant"
assert whole.usage.completion_tokens == 24 and whole.choices[0].finish_reason == "length", whole
assert whole.usage.total_tokens == whole.usage.prompt_tokens + 24
assert text, whole
print("chat", repr(text))

pieces, finish, usage = [], None, None
stream = client.chat.completions.create(
    model=model,
    messages=question,
    temperature=0,
    max_tokens=24,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
assert "".join(pieces) == text, (pieces, text)
assert finish == "length" and usage is not None and usage.completion_tokens == 24, (finish, usage)
print("stream", len(pieces), "deltas joined equal the whole answer")

completion = client.completions.create(model=model, prompt="Once upon a time", temperature=0)
assert completion.usage.completion_tokens <= 16, completion.usage
assert completion.choices[0].text, completion
print("completion", repr(completion.choices[0].text))

try:
    client.chat.completions.create(model="no-such-model", messages=question)
    raise AssertionError("an unknown model was served")
except openai.NotFoundError as e:
    assert e.body["code"] == "model_not_found", e.body
print("unknown model: 404")

turn = [{"role": "user", "content": "Tell me about the Moon."}]
first = client.chat.completions.create(model=model, messages=turn, temperature=0, max_tokens=16)
turn += [
    {"role": "assistant", "content": first.choices[0].message.content},
    {"role": "user", "content": "And the Sun?"},
]
second = client.chat.completions.create(model=model, messages=turn, temperature=0, max_tokens=16)
cached = second.usage.prompt_tokens_details.cached_tokens
assert cached >= first.usage.prompt_tokens, (cached, first.usage, second.usage)
assert cached < second.usage.prompt_tokens, (cached, second.usage)
print("conversation: the second turn reused", cached, "of", second.usage.prompt_tokens, "prompt tokens")

prompts = [
    "Name a colour.",
    "What is 2 + 2?",
    "Say hello in French.",
    "Name a planet.",
    "What do bees make?",
    "Name a fruit.",
    "What is the opposite of hot?",
    "Name a day of the week.",
    "What animal barks?",
    "Name a month.",
    "What is ice made of?",
    "Name a musical instrument.",
    "What colour is the sky?",
    "Name a shape.",
    "What do cows drink?",
    "Name a sport.",
][:clients]


def ask(prompt):
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        temperature=0,
        max_tokens=12,
    )
    return r.choices[0].message.content


alone = [ask(p) for p in prompts]
together = [None] * len(prompts)
errors = []


def worker(i):
    try:
        together[i] = ask(prompts[i])
    except Exception as e:  # reported below, with the prompt
        errors.append((prompts[i], repr(e)))


threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
for p, a, b in zip(prompts, alone, together):
    assert a == b, (p, a, b)
print(len(prompts), "clients at once equal one at a time")
print("ok")
