// botgate console: copy buttons, reading a chosen key file into the form,
// and the playground's chat. Everything else works without script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      const text = source.textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
      } catch (_) {
        // No clipboard permission: select the text so Ctrl+C copies it.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      }
      const label = button.textContent;
      button.textContent = button.dataset.copied || label;
      button.classList.add("done");
      setTimeout(() => {
        button.textContent = label;
        button.classList.remove("done");
      }, 1500);
    });
  }

  const file = document.getElementById("private_key_file");
  const area = document.getElementById("private_key");
  if (file && area) {
    file.addEventListener("change", () => {
      const chosen = file.files && file.files[0];
      if (!chosen) return;
      if (chosen.size > 64 * 1024) {
        file.value = "";
        return;
      }
      const reader = new FileReader();
      reader.onload = () => {
        area.value = String(reader.result);
        area.dispatchEvent(new Event("input"));
      };
      reader.readAsText(chosen);
    });
  }

  const playground = document.getElementById("playground");
  if (playground) startPlayground(playground);

  // A test message's delivery status, polled until it is final.
  const status = document.getElementById("test-message-status");
  if (status && status.dataset.poll) {
    const badge = status.querySelector(".badge");
    const attempts = status.querySelector(".attempts");
    const error = status.querySelector(".error-text");
    const label = attempts.textContent.split(":")[0];
    const poll = async () => {
      if (status.dataset.status === "delivered" || status.dataset.status === "failed") return;
      try {
        const response = await fetch(status.dataset.poll, { credentials: "same-origin" });
        if (response.ok) {
          const m = await response.json();
          status.dataset.status = m.status;
          badge.className = "badge " + m.status;
          badge.dataset.status = m.status;
          badge.textContent = m.label;
          attempts.textContent = label + ": " + m.attempts;
          error.textContent = m.last_error || "";
        }
      } catch (_) {
        // Try again at the next tick.
      }
      setTimeout(poll, 700);
    };
    poll();
  }
});

// The playground: posts what the user does (the form, or a button of a
// bot's message) and polls the conversation's feed, rendering each message
// as NAVER WORKS shows it. Built with textContent only: nothing a bot or an
// engine sent is ever parsed as HTML.
function startPlayground(root) {
  const words = JSON.parse(root.dataset.words);
  const chat = document.getElementById("chat");
  const form = document.getElementById("say");
  const text = document.getElementById("say-text");
  const where = document.getElementById("say-where");
  const problem = document.getElementById("chat-error");
  const slack = root.dataset.platform === "slack";
  let shown = "";

  const el = (tag, className, content) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined && content !== null) node.textContent = String(content);
    return node;
  };

  async function post(fields) {
    const body = new URLSearchParams();
    body.set("csrf", form.elements.csrf.value);
    body.set("where", where.value);
    for (const [k, v] of Object.entries(fields)) body.set(k, v);
    const response = await fetch(form.action, {
      method: "POST",
      headers: { "X-Botgate-Fetch": "1" },
      body,
      credentials: "same-origin",
    });
    problem.hidden = response.ok;
    if (!response.ok) problem.textContent = words.failed;
    refresh();
  }

  // A NAVER WORKS action as a button (or a link for uri actions).
  function action(a) {
    if (!a || typeof a !== "object") return null;
    const label = a.label || a.text || a.type;
    if (a.type === "uri" && /^https?:\/\//.test(String(a.uri || ""))) {
      const link = el("a", "action", label);
      link.href = a.uri;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      return link;
    }
    const button = el("button", "action", label);
    button.type = "button";
    button.addEventListener("click", () => {
      if (a.type === "postback") post({ kind: "postback", data: a.data || "" });
      else post({ kind: "text", text: a.text || a.label || "", postback: a.postback || "" });
    });
    return button;
  }

  function actions(list) {
    const box = el("div", "actions");
    for (const a of Array.isArray(list) ? list : []) {
      const node = action(a);
      if (node) box.append(node);
    }
    return box;
  }

  function image(url) {
    if (!/^https:\/\//.test(String(url || ""))) return el("span", "image", "🖼 " + words.image);
    const img = el("img", "image");
    img.src = url;
    img.alt = words.image;
    return img;
  }

  // One message's content, as the platform renders it.
  function render(c) {
    const box = el("div", "content");
    if (!c || typeof c !== "object") return box;
    switch (c.type) {
      case "text":
        box.append(el("p", "text", c.text));
        break;
      case "postback":
        box.append(el("p", "text postback", "↩ " + c.data));
        break;
      case "command":
        box.append(el("p", "text command", c.command + " " + (c.text || "")));
        break;
      case "sticker":
        box.append(el("p", "sticker", "🙂 " + words.sticker + " " + c.packageId + "/" + c.stickerId));
        break;
      case "image":
        box.append(c.previewImageUrl || c.originalContentUrl ? image(c.previewImageUrl || c.originalContentUrl) : el("p", "image", "🖼 " + words.image));
        break;
      case "button_template":
        box.append(el("p", "text", c.contentText), actions(c.actions));
        break;
      case "list_template":
        for (const e of Array.isArray(c.elements) ? c.elements : []) {
          const item = el("div", "element");
          item.append(el("strong", null, e.title), el("p", null, e.subtitle || ""), actions(e.action ? [e.action] : []));
          box.append(item);
        }
        box.append(actions((c.actions || []).flat()));
        break;
      case "carousel":
      case "image_carousel": {
        const row = el("div", "carousel");
        for (const col of Array.isArray(c.columns) ? c.columns : []) {
          const card = el("div", "card");
          if (col.originalContentUrl || col.imageUrl) card.append(image(col.originalContentUrl || col.imageUrl));
          if (col.title) card.append(el("strong", null, col.title));
          if (col.text) card.append(el("p", null, col.text));
          card.append(actions(col.actions || (col.action ? [col.action] : [])));
          row.append(card);
        }
        box.append(row);
        break;
      }
      default:
        box.append(el("p", "text other", "[" + c.type + "] " + (c.altText || c.text || c.contentText || "")));
    }
    const quick = c.quickReply && Array.isArray(c.quickReply.items) ? c.quickReply.items : [];
    if (quick.length) box.append(actions(quick.map((i) => i.action)));
    return box;
  }

  // A Slack message as Slack shows it: its blocks, else its text.
  function renderSlack(stored) {
    const box = el("div", "content");
    // botgate keeps the chat.postMessage body under "message".
    const c = stored && typeof stored === "object" ? stored.message || stored : null;
    if (!c || typeof c !== "object") return box;
    const blocks = Array.isArray(c.blocks) ? c.blocks : [];
    if (!blocks.length) box.append(el("p", "text", c.text));
    for (const b of blocks) {
      if (!b || typeof b !== "object") continue;
      if (b.type === "section" || b.type === "header") {
        box.append(el("p", "text", b.text && b.text.text));
      } else if (b.type === "image") {
        box.append(image(b.image_url));
      } else if (b.type === "context") {
        box.append(el("p", "context", (b.elements || []).map((e) => e.text || "").join(" ")));
      } else if (b.type === "actions") {
        const row = el("div", "actions");
        for (const e of Array.isArray(b.elements) ? b.elements : []) {
          if (!e || e.type !== "button") continue;
          const label = (e.text && e.text.text) || "button";
          if (e.url) row.append(action({ type: "uri", label, uri: e.url }));
          else row.append(action({ type: "postback", label, data: e.value || "" }));
        }
        box.append(row);
      } else {
        box.append(el("p", "text other", "[" + b.type + "]"));
      }
    }
    return box;
  }

  // Where the message is in the pipeline, behind one click.
  function pipeline(item) {
    const details = el("details", "pipeline");
    const summary = el("summary", "badge " + item.status, item.status);
    details.append(summary);
    const steps = el("ol", "steps");
    if (item.side === "user") {
      steps.append(el("li", null, words.stored + " ✓"), el("li", null, words.engine + ": " + item.status));
    } else {
      steps.append(el("li", null, words.engine + " ✓"), el("li", null, words.sent + ": " + item.status));
    }
    steps.append(el("li", null, words.attempts + ": " + item.attempts));
    if (item.error) steps.append(el("li", "error-text", words.error + ": " + item.error));
    details.append(steps);
    return details;
  }

  function draw(items) {
    const open = new Set([...chat.querySelectorAll("details[open]")].map((d) => d.closest("li").dataset.id));
    chat.replaceChildren();
    for (const item of items) {
      const li = el("li", "bubble " + item.side);
      li.dataset.id = item.id;
      li.dataset.side = item.side;
      li.dataset.status = item.status;
      const content = item.side === "bot" && slack ? renderSlack(item.content) : render(item.content);
      li.append(el("span", "who", item.side === "user" ? words.you : words.bot), content);
      const details = pipeline(item);
      if (open.has(item.id)) details.open = true;
      li.append(details);
      chat.append(li);
    }
    chat.lastElementChild && chat.lastElementChild.scrollIntoView({ block: "nearest" });
  }

  async function refresh() {
    try {
      const response = await fetch(root.dataset.feed + "?where=" + where.value, { credentials: "same-origin" });
      if (!response.ok) return;
      const body = await response.text();
      if (body === shown) return;
      shown = body;
      draw(JSON.parse(body).items || []);
    } catch (_) {
      // The next poll tries again.
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = event.submitter;
    if (button && button.name === "sticker") post({ sticker: button.value });
    else if (button && button.value === "image") post({ kind: "image" });
    else if (text.value.trim()) {
      post({ kind: "text", text: text.value });
      text.value = "";
    }
  });
  for (const radio of document.querySelectorAll("input[name=where]")) {
    radio.addEventListener("change", () => {
      where.value = radio.value;
      shown = "";
      refresh();
    });
  }
  refresh();
  setInterval(refresh, 700);
}
