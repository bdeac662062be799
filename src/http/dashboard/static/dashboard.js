// Petrel dashboard: the only script (loaded with defer; the CSP allows no inline script).
// - data-copy buttons copy their value to the clipboard;
// - forms with data-confirm ask before submitting;
// - the message list (tbody[data-live]) follows /live (server-sent events) and adds rows.
// Security: text from the server goes into the page with textContent only, never as markup.

function copy(button) {
  const value = button.getAttribute("data-copy") || "";
  const done = () => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => {
      button.textContent = label;
    }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(value).then(done, () => fallbackCopy(value, done));
  } else fallbackCopy(value, done);
}

function fallbackCopy(value, done) {
  const area = document.createElement("textarea");
  area.value = value;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  try {
    document.execCommand("copy");
    done();
  } finally {
    area.remove();
  }
}

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
  if (button) copy(button);
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.getAttribute("data-confirm") : null;
  if (question && !window.confirm(question)) event.preventDefault();
});

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function utc(ms) {
  return new Date(ms).toISOString().slice(0, 19).replace("T", " ");
}

function stateBadge(address, state) {
  const badge = el("span", `state s-${state}`, state);
  badge.setAttribute("data-rcpt", address);
  return badge;
}

function messageRow(m) {
  const row = el("tr", "new");
  row.setAttribute("data-id", m.id);
  const when = el("td");
  const t = el("time", "", utc(m.receivedAt));
  t.setAttribute("datetime", new Date(m.receivedAt).toISOString());
  when.appendChild(t);
  const idCell = el("td");
  const link = el("a", "", m.id);
  link.href = `/messages/${encodeURIComponent(m.id)}`;
  idCell.appendChild(link);
  const rcpts = el("ul", "rcpts");
  for (const r of m.recipients.slice(0, 3)) {
    const li = el("li");
    li.appendChild(el("span", "addr", r.address));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(stateBadge(r.address, r.state));
    rcpts.appendChild(li);
  }
  if (m.recipients.length > 3) rcpts.appendChild(el("li", "more", `+${m.recipients.length - 3} more`));
  const rcptCell = el("td");
  rcptCell.appendChild(rcpts);
  row.append(when, idCell, el("td", "addr", m.from), rcptCell, el("td", "", m.categories.join(", ")));
  return row;
}

function follow(tbody) {
  const after = tbody.getAttribute("data-live");
  const source = new EventSource(`/live?after=${encodeURIComponent(after)}`);
  const status = document.getElementById("live-status");
  source.addEventListener("open", () => {
    if (status) status.setAttribute("data-connected", "1");
  });
  source.addEventListener("message", (event) => {
    const m = JSON.parse(event.data);
    if (tbody.querySelector(`tr[data-id="${CSS.escape(m.id)}"]`)) return;
    tbody.insertBefore(messageRow(m), tbody.firstChild);
    document.getElementById("no-messages")?.remove();
    while (tbody.rows.length > 200) tbody.deleteRow(-1);
  });
  source.addEventListener("state", (event) => {
    const s = JSON.parse(event.data);
    const row = tbody.querySelector(`tr[data-id="${CSS.escape(s.messageId)}"]`);
    const badge = row?.querySelector(`[data-rcpt="${CSS.escape(s.recipient)}"]`);
    if (badge) {
      badge.textContent = s.state;
      badge.className = `state s-${s.state}`;
    }
  });
}

const live = document.querySelector("tbody[data-live]");
if (live && "EventSource" in window) follow(live);
