//! Chat templates: turning a conversation into the prompt text a model was
//! trained on, by rendering the model's own Jinja template.
//!
//! The environment mimics HF transformers' `apply_chat_template`: trim_blocks
//! and lstrip_blocks on, loop controls on, the `raise_exception` and
//! `strftime_now` globals, Python string/list methods (minijinja-contrib's
//! pycompat), and `tools` / `documents` passed as `none` the way HF passes
//! them when absent. Known gaps: `strftime_now` uses UTC (HF uses local
//! time), `tojson` is minijinja's compact form rather than Python's
//! `json.dumps` spacing, and HF's `{% generation %}` tag is not supported.

use minijinja::{Environment, ErrorKind, Value};

/// Name of the one template in the environment; no extension, so no autoescape.
const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Why a chat template could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template syntax error at {}: {detail}", line_label(*.line))]
    Syntax { line: Option<usize>, detail: String },
    /// The template called `raise_exception(message)`: usually a conversation
    /// the model does not support (e.g. roles not alternating).
    #[error("chat template rejected the conversation: {message}")]
    Raised { message: String },
    #[error("chat template failed to render at {}: {detail}", line_label(*.line))]
    Render { line: Option<usize>, detail: String },
}

fn line_label(line: Option<usize>) -> String {
    line.map_or_else(|| "an unknown line".to_string(), |l| format!("line {l}"))
}

/// Marker carried as the source of the minijinja error that
/// `raise_exception` returns, so rendering can tell it from other failures.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RaisedException(String);

/// A compiled chat template plus the special tokens it may reference.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles `source` once; a syntax error names the line.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| ChatError::Syntax {
                line: e.line(),
                detail: describe(&e),
            })?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where
    /// the assistant's reply should begin.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(render_error)?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
                tools => Value::from(()),
                documents => Value::from(()),
            })
            .map_err(render_error)
    }
}

fn render_error(e: minijinja::Error) -> ChatError {
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(raised) = s.downcast_ref::<RaisedException>() {
            return ChatError::Raised {
                message: raised.0.clone(),
            };
        }
        source = s.source();
    }
    ChatError::Render {
        line: e.line(),
        detail: describe(&e),
    }
}

/// minijinja's kind plus detail, without its own "(in template:line)" suffix,
/// which [`ChatError`] states itself.
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(
        minijinja::Error::new(ErrorKind::InvalidOperation, message.clone())
            .with_source(RaisedException(message)),
    )
}

fn strftime_now(format: String) -> Result<String, minijinja::Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    strftime(&format, secs).map_err(|d| minijinja::Error::new(ErrorKind::InvalidOperation, d))
}

/// Python/C `strftime` through chrono (in UTC), which also takes glibc's
/// `%-d`-style unpadded forms. An unknown directive is an error naming the format.
fn strftime(format: &str, unix_secs: i64) -> Result<String, String> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!("strftime_now: unsupported directive in '{format}'"));
    }
    let t = chrono::DateTime::from_timestamp(unix_secs, 0)
        .ok_or_else(|| format!("strftime_now: {unix_secs} is out of range"))?;
    Ok(t.format_with_items(items.into_iter()).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected strings in these tests were cross-checked by rendering the same
    // templates with Python jinja2 3.1.6 set up as HF transformers does
    // (ImmutableSandboxedEnvironment, trim_blocks=True, lstrip_blocks=True,
    // loopcontrols, raise_exception, tools=None, documents=None).

    /// SmolLM2-135M-Instruct's `tokenizer.chat_template`, read from its GGUF.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// Qwen2.5-Instruct's ChatML template (with its tool-calling branches).
    const QWEN25: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

    /// Meta-Llama-3-Instruct's template: starts the first turn with `bos_token`.
    const LLAMA3: &str = r#"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"#;

    /// Block tags on indented lines (trim/lstrip_blocks), Python methods,
    /// `tools` / `documents` tests, both special tokens.
    const WHITESPACE: &str = r#"{{ bos_token }}
{% for message in messages %}
    {% if message.role == 'system' %}
  [SYS] {{ message.content.strip() }}
    {% elif message.content.startswith('/') %}
  [CMD] {{ message.content[1:].split(' ')[0].upper() }}
    {% else %}
  [{{ message.role | upper }}] {{ message.content.strip().replace('  ', ' ') }}{% if loop.last %} (last){% endif %}

    {% endif %}
{% endfor %}
{% if tools is not none %}tools!{% endif %}
{% if documents %}docs!{% endif %}
{% if add_generation_prompt %}
[ASSISTANT]
{% endif %}
{{ eos_token }}
"#;

    fn user(c: &str) -> ChatMessage {
        ChatMessage::new("user", c)
    }
    fn assistant(c: &str) -> ChatMessage {
        ChatMessage::new("assistant", c)
    }
    fn system(c: &str) -> ChatMessage {
        ChatMessage::new("system", c)
    }

    fn smol() -> ChatTemplate {
        ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap()
    }

    #[test]
    fn smollm2_default_system_prompt() {
        let out = smol()
            .render(&[user("What is the capital of France?")], true)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn smollm2_explicit_system_message() {
        let out = smol()
            .render(&[system("Be terse."), user("Hi")], true)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn smollm2_multi_turn_without_generation_prompt() {
        let msgs = [
            user("Hi"),
            assistant("Hello! How can I help?"),
            user("2+2?"),
        ];
        let out = smol().render(&msgs, false).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        );
    }

    #[test]
    fn qwen25_chatml() {
        let t = ChatTemplate::new(QWEN25, "", "<|im_end|>").unwrap();
        assert_eq!(
            t.render(&[user("Hi")], true).unwrap(),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let msgs = [
            system("You are a pirate."),
            user("Hi"),
            assistant("Arr."),
            user("Bye"),
        ];
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nArr.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn llama3_uses_bos_token_and_trim() {
        let t = ChatTemplate::new(LLAMA3, "<|begin_of_text|>", "<|eot_id|>").unwrap();
        let out = t
            .render(&[system("Be brief."), user("  Hello  \n")], true)
            .unwrap();
        assert_eq!(
            out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn whitespace_control_and_python_methods_match_jinja2() {
        let t = ChatTemplate::new(WHITESPACE, "<s>", "</s>").unwrap();
        let msgs = [
            system("  sys prompt \n"),
            user("/reset all now"),
            user("  hi  there  "),
        ];
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<s>\n  [SYS] sys prompt\n  [CMD] RESET\n  [USER] hi there (last)\n[ASSISTANT]\n</s>"
        );
        assert_eq!(
            t.render(&[user("x")], false).unwrap(),
            "<s>\n  [USER] x (last)\n</s>"
        );
    }

    #[test]
    fn loop_controls_are_enabled() {
        let src = "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}{{ m.content }}{% if loop.index >= 3 %}{% break %}{% endif %}{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let msgs = [system("S"), user("a"), user("b"), user("c")];
        assert_eq!(t.render(&msgs, false).unwrap(), "ab");
    }

    #[test]
    fn dict_literals_keep_insertion_order_like_python() {
        // Tool-call templates build dicts and iterate or serialise them.
        let src = r#"{% set d = {"name": "f", "arguments": 1, "id": 2} %}{% for k in d %}{{ k }} {% endfor %}"#;
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "name arguments id ");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let src = "{% for m in messages %}\n{{ m.content }}\n{% if m.role %}\n{% endfor %}";
        let err = ChatTemplate::new(src, "", "").unwrap_err();
        match &err {
            ChatError::Syntax { line, .. } => assert_eq!(*line, Some(4)),
            other => panic!("expected a syntax error, got {other:?}"),
        }
        assert!(err.to_string().contains("line 4"), "{err}");
    }

    #[test]
    fn raise_exception_carries_the_message() {
        let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}ok";
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert_eq!(t.render(&[user("hi")], false).unwrap(), "ok");
        match t.render(&[assistant("hi")], false) {
            Err(ChatError::Raised { message }) => assert_eq!(
                message,
                "Conversation roles must alternate user/assistant/user/assistant/..."
            ),
            other => panic!("expected Raised, got {other:?}"),
        }
    }

    #[test]
    fn runtime_error_is_a_render_error_with_line() {
        let t = ChatTemplate::new("line one\n{{ messages[0].content.nope() }}", "", "").unwrap();
        let err = t.render(&[user("x")], false).unwrap_err();
        assert!(
            matches!(err, ChatError::Render { line: Some(2), .. }),
            "{err:?}"
        );
    }

    #[test]
    fn empty_conversation_is_not_a_panic() {
        // messages[0] is undefined; comparing it is fine in jinja2 too.
        let out = smol().render(&[], true).unwrap();
        assert_eq!(out, "<|im_start|>assistant\n");
    }

    #[test]
    fn strftime_now_renders_this_year() {
        let t = ChatTemplate::new("{{ strftime_now('%Y') }}", "", "").unwrap();
        let year: i64 = t.render(&[], false).unwrap().parse().unwrap();
        assert!((2024..2200).contains(&year), "{year}");
        let bad = ChatTemplate::new("{{ strftime_now('%Q') }}", "", "").unwrap();
        let err = bad.render(&[], false).unwrap_err();
        assert!(err.to_string().contains("%Q"), "{err}");
    }

    #[test]
    fn strftime_formats_known_instants() {
        // 2024-02-29T13:05:09Z, a Thursday, day 60 of a leap year.
        let t = 1_709_211_909;
        assert_eq!(strftime("%d %b %Y", t).unwrap(), "29 Feb 2024");
        assert_eq!(
            strftime("%A %B %-d, %y %H:%M:%S %I%p %j %%", t).unwrap(),
            "Thursday February 29, 24 13:05:09 01PM 060 %"
        );
        assert_eq!(strftime("%Y-%m-%d %a", 0).unwrap(), "1970-01-01 Thu");
        // 2000-12-31 (leap century, last day) and a pre-1970 instant.
        assert_eq!(
            strftime("%Y-%m-%d %j", 978_220_800).unwrap(),
            "2000-12-31 366"
        );
        assert_eq!(strftime("%Y-%m-%d %H", -1).unwrap(), "1969-12-31 23");
    }
}
