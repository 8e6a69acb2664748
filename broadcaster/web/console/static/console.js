// broadcaster console: live preview as the person types. Plain JavaScript, no build step.
// Everything the server returns is shown with textContent: incident text is never run.
(function () {
  "use strict";
  var form = document.getElementById("incident-form");
  if (!form) { return; }
  var csrf = form.querySelector("input[name=csrf]").value;
  var incidentId = form.getAttribute("data-incident-id") || null;
  if (incidentId && window.location.pathname === "/new") {
    // Just published a new incident: reloading must show it, not post the form again.
    window.history.replaceState(null, "", "/incidents/" + encodeURIComponent(incidentId));
  }
  var state = document.getElementById("preview-state");
  var warnings = document.getElementById("warnings");
  var timer = null;
  var sent = 0;        // requests sent
  var shown = 0;       // newest request whose answer is shown
  var firstInputAt = null;  // the oldest keystroke not yet sent for a preview
  var pendingSince = null;  // the oldest keystroke sent whose preview is not yet shown

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function formData() {
    var data = {};
    Array.prototype.forEach.call(form.elements, function (input) {
      if (input.name && input.name !== "csrf" && input.name !== "base_hash") {
        data[input.name] = input.value;
      }
    });
    return data;
  }

  function showErrors(errors) {
    Array.prototype.forEach.call(form.querySelectorAll("[data-error-for]"), function (p) {
      var list = errors[p.getAttribute("data-error-for")] || [];
      p.textContent = list.join("; ");
    });
  }

  function showChannel(box, channel) {
    var posts = box.querySelector(".posts");
    posts.textContent = "";
    if (channel.note) { posts.appendChild(el("p", "meta", channel.note)); }
    if (!channel.posts.length && !channel.note) {
      posts.appendChild(el("p", "meta", "nothing to post for this incident"));
    }
    channel.posts.forEach(function (post) {
      var head = (post.now ? "now" : "at " + post.at) + " · " + post.kind;
      if (post.next_update_at) { head += " · promises next update by " + post.next_update_at; }
      posts.appendChild(el("p", "meta post-head", head));
      post.parts.forEach(function (part, i) {
        var div = el("div", "part" + (part.reply ? " reply" : ""));
        var label = (post.parts.length > 1 ? "[" + (i + 1) + "/" + post.parts.length + "] " : "") +
          part.length + "/" + part.limit + (part.reply ? " · reply in thread" : "");
        var count = el("span", "count" + (part.length > part.limit ? " over" : ""), label);
        count.setAttribute("data-testid", "count");
        div.appendChild(count);
        div.appendChild(el("span", "text", part.text));
        posts.appendChild(div);
      });
    });
  }

  function render(result, seq) {
    if (seq < shown) { return; }  // an older answer arriving late
    shown = seq;
    showErrors(result.errors || {});
    warnings.textContent = (result.warnings || []).map(function (w) { return "warning: " + w; }).join("\n");
    var hasErrors = Object.keys(result.errors || {}).length > 0;
    Array.prototype.forEach.call(document.querySelectorAll(".preview[data-channel]"), function (box) {
      var channel = (result.channels || {})[box.getAttribute("data-channel")];
      if (hasErrors) {
        box.querySelector(".posts").textContent = "";
        box.querySelector(".posts").appendChild(el("p", "error", "fix the errors to see the posts"));
      } else if (channel) {
        showChannel(box, channel);
      }
    });
    if (seq === sent) {
      state.textContent = hasErrors ? "Fix the fields in red." : "Preview up to date.";
      // data-latency-ms: from the oldest keystroke not yet shown (debounce included) to
      // the frame that paints its preview: a timer queued from requestAnimationFrame runs
      // once that frame is drawn.
      requestAnimationFrame(function () {
        setTimeout(function () {
          if (seq !== sent) { return; }  // typed again meanwhile: the next answer reports
          var latency = pendingSince === null ? 0 : performance.now() - pendingSince;
          pendingSince = null;
          state.setAttribute("data-latency-ms", latency.toFixed(1));
          state.setAttribute("data-seq", String(seq));
        }, 0);
      });
    }
  }

  function refresh() {
    var seq = ++sent;
    if (pendingSince === null) { pendingSince = firstInputAt; }
    firstInputAt = null;
    state.textContent = "Updating the preview…";
    fetch("/preview", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Accept": "application/json" },
      body: JSON.stringify({ form: formData(), incident_id: incidentId })
    }).then(function (response) {
      if (!response.ok) { throw new Error("preview failed: HTTP " + response.status); }
      return response.json();
    }).then(function (result) { render(result, seq); })
      .catch(function (err) { state.textContent = String(err.message || err); });
  }

  function changed() {
    if (firstInputAt === null) { firstInputAt = performance.now(); }
    if (timer !== null) { clearTimeout(timer); }
    timer = setTimeout(refresh, 120);
  }

  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  refresh();
})();
