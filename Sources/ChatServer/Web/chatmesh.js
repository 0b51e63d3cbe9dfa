/* chatmesh web client.
 * A small Engine.IO v4 / Socket.IO v5 client (WebSocket, falling back to HTTP long-polling)
 * and the chat UI on top of it. Every piece of remote data is rendered with textContent.
 * Query options: ?room=R&name=N prefill the form; ?transport=polling|websocket forces a transport.
 */
(function () {
  'use strict';

  var RECORD_SEPARATOR = '\x1e';        // separates Engine.IO packets in a polling payload
  var WS_OPEN_TIMEOUT_MS = 8000;         // no open packet by then: the WebSocket counts as failed
  var POLLING_OPEN_TIMEOUT_MS = 20000;
  var SIO_CONNECT_TIMEOUT_MS = 20000;    // Engine.IO open -> Socket.IO CONNECT reply
  var BACKOFF_MIN_MS = 500;
  var BACKOFF_MAX_MS = 5000;
  var MAX_RENDERED_MESSAGES = 500;
  var SILENT = { onPacket: function () {}, onClose: function () {} };

  function buildQuery(params) {
    return Object.keys(params)
      .filter(function (k) { return params[k] !== undefined && params[k] !== null; })
      .map(function (k) { return encodeURIComponent(k) + '=' + encodeURIComponent(params[k]); })
      .join('&');
  }

  var cacheBusterCounter = 0;
  function engineUrl(scheme, query) {
    var base = scheme ? scheme + '//' + location.host : '';
    return base + '/socket.io/?' + buildQuery(query);
  }

  // ---------------------------------------------------------------- Engine.IO transports
  // A transport reports raw Engine.IO packets (strings) through events.onPacket and its end,
  // once, through events.onClose(reason). close(finalPackets) ends it quietly after writing
  // finalPackets (if any).

  function WebSocketTransport(query, events) {
    this.name = 'websocket';
    this.query = query;
    this.events = events;
    this.ws = null;
    this.done = false;
    this.sid = null;
  }

  WebSocketTransport.prototype.open = function () {
    var self = this;
    var scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    var url = engineUrl(scheme, Object.assign({ EIO: '4', transport: 'websocket' }, this.query));
    var ws;
    try {
      if (typeof WebSocket !== 'function') { throw new Error('WebSocket is not supported'); }
      ws = new WebSocket(url);
    } catch (e) {
      setTimeout(function () { self.fail('websocket unavailable: ' + e.message); }, 0);
      return;
    }
    this.ws = ws;
    ws.onmessage = function (ev) {
      if (typeof ev.data === 'string') { self.events.onPacket(ev.data); }
    };
    ws.onerror = function () { /* a close event follows */ };
    ws.onclose = function (ev) {
      self.fail('websocket closed' + (ev && ev.code ? ' (code ' + ev.code + ')' : ''));
    };
  };

  WebSocketTransport.prototype.send = function (packets) {
    if (this.done || !this.ws || this.ws.readyState !== 1) { return; }
    for (var i = 0; i < packets.length; i++) { this.ws.send(packets[i]); }
  };

  WebSocketTransport.prototype.detach = function () {
    this.done = true;
    this.events = SILENT;
    if (this.ws) {
      this.ws.onmessage = this.ws.onerror = this.ws.onclose = null;
    }
  };

  WebSocketTransport.prototype.fail = function (reason) {
    if (this.done) { return; }
    var events = this.events;
    this.detach();
    try { if (this.ws) { this.ws.close(); } } catch (e) { /* already closed */ }
    events.onClose(reason);
  };

  WebSocketTransport.prototype.close = function (finalPackets) {
    if (this.done) { return; }
    if (finalPackets) { this.send(finalPackets); }
    this.detach();
    try { if (this.ws) { this.ws.close(1000); } } catch (e) { /* already closed */ }
  };

  function PollingTransport(query, events) {
    this.name = 'polling';
    this.query = query;
    this.events = events;
    this.sid = null;            // set by the engine once the open packet arrived
    this.state = 'open';        // open | closing (flushing final packets) | closed
    this.writeBuffer = [];
    this.writing = false;
    this.pollAborter = typeof AbortController === 'function' ? new AbortController() : null;
  }

  PollingTransport.prototype.url = function () {
    var q = Object.assign({ EIO: '4', transport: 'polling' }, this.query);
    if (this.sid) { q.sid = this.sid; }
    q.t = Date.now().toString(36) + '.' + (cacheBusterCounter++).toString(36);
    return engineUrl('', q);
  };

  PollingTransport.prototype.open = function () { this.pollLoop(); };

  PollingTransport.prototype.pollLoop = async function () {
    while (this.state === 'open') {
      var response, body;
      try {
        response = await fetch(this.url(), {
          method: 'GET', cache: 'no-store', credentials: 'same-origin',
          signal: this.pollAborter ? this.pollAborter.signal : undefined
        });
        body = await response.text();
      } catch (e) {
        return this.fail('polling request failed');
      }
      if (this.state !== 'open') { return; }
      if (!response.ok) {
        return this.fail('polling GET answered HTTP ' + response.status + describeHttpError(body));
      }
      var packets = body.split(RECORD_SEPARATOR);
      for (var i = 0; i < packets.length; i++) {
        if (this.state !== 'open') { return; }
        if (packets[i] !== '') { this.events.onPacket(packets[i]); }
      }
    }
  };

  PollingTransport.prototype.send = function (packets) {
    if (this.state !== 'open') { return; }
    Array.prototype.push.apply(this.writeBuffer, packets);
    this.flush();
  };

  // One POST at a time (the server rejects overlapping writes); whatever queued meanwhile
  // goes out in the next POST, packets joined by the record separator.
  PollingTransport.prototype.flush = async function () {
    if (this.writing || this.state === 'closed' || !this.sid) { return; }
    if (this.writeBuffer.length === 0) {
      if (this.state === 'closing') { this.shutdown(); }
      return;
    }
    var body = this.writeBuffer.join(RECORD_SEPARATOR);
    this.writeBuffer = [];
    this.writing = true;
    var failure = null;
    try {
      var response = await fetch(this.url(), {
        method: 'POST', body: body, cache: 'no-store', credentials: 'same-origin',
        headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
        keepalive: body.length < 60000
      });
      var text = await response.text();
      if (!response.ok) { failure = 'HTTP ' + response.status + describeHttpError(text); }
    } catch (e) {
      failure = 'network error';
    }
    this.writing = false;
    if (failure) { return this.fail('polling POST failed: ' + failure); }
    this.flush();
  };

  PollingTransport.prototype.shutdown = function () {
    this.state = 'closed';
    this.writeBuffer = [];
    if (this.pollAborter) { this.pollAborter.abort(); }
  };

  PollingTransport.prototype.fail = function (reason) {
    if (this.state === 'closed') { return; }
    var events = this.events;
    this.events = SILENT;
    this.shutdown();
    events.onClose(reason);
  };

  PollingTransport.prototype.close = function (finalPackets) {
    if (this.state !== 'open') { return; }
    this.events = SILENT;
    if (this.sid && finalPackets && finalPackets.length) {
      Array.prototype.push.apply(this.writeBuffer, finalPackets);
      this.state = 'closing';
      this.flush();
    } else {
      this.shutdown();
    }
  };

  function describeHttpError(body) {
    try {
      var parsed = JSON.parse(body);
      if (parsed && typeof parsed.message === 'string') { return ': ' + parsed.message; }
    } catch (e) { /* not JSON */ }
    return '';
  }

  // ---------------------------------------------------------------- Engine.IO session
  // mode: 'auto' (WebSocket, falling back to polling when it cannot open), 'websocket', 'polling'.
  // events: onOpen(transportName), onFallback(reason), onData(string), onClose(reason).

  function EngineConnection(query, mode, events) {
    this.query = query;
    this.mode = mode;
    this.events = events;
    this.transport = null;
    this.opened = false;
    this.closed = false;
    this.openTimer = null;
    this.pingTimer = null;
    this.pingInterval = 25000;
    this.pingTimeout = 20000;
  }

  EngineConnection.prototype.open = function () {
    this.start(this.mode === 'polling' ? 'polling' : 'websocket');
  };

  EngineConnection.prototype.start = function (name) {
    var self = this;
    var Transport = name === 'websocket' ? WebSocketTransport : PollingTransport;
    var transport = new Transport(this.query, {
      onPacket: function (packet) { self.onPacket(transport, packet); },
      onClose: function (reason) { self.onTransportClose(transport, reason); }
    });
    this.transport = transport;
    this.opened = false;
    clearTimeout(this.openTimer);
    this.openTimer = setTimeout(function () {
      self.onTransportClose(transport, name + ' open timed out');
    }, name === 'websocket' ? WS_OPEN_TIMEOUT_MS : POLLING_OPEN_TIMEOUT_MS);
    transport.open();
  };

  EngineConnection.prototype.onTransportClose = function (transport, reason) {
    if (transport !== this.transport || this.closed) { return; }
    clearTimeout(this.openTimer);
    clearTimeout(this.pingTimer);
    transport.close(null);
    if (!this.opened && transport.name === 'websocket' && this.mode === 'auto') {
      this.events.onFallback(reason);
      this.start('polling');
      return;
    }
    this.end(reason);
  };

  EngineConnection.prototype.onPacket = function (transport, packet) {
    if (transport !== this.transport || this.closed) { return; }
    var type = packet.charAt(0);
    var data = packet.slice(1);
    if (!this.opened) {
      var handshake = null;
      if (type === '0') {
        try { handshake = JSON.parse(data); } catch (e) { handshake = null; }
      }
      if (!handshake || typeof handshake.sid !== 'string') {
        return this.onTransportClose(transport, 'unexpected first packet ' + JSON.stringify(packet.slice(0, 60)));
      }
      clearTimeout(this.openTimer);
      this.opened = true;
      transport.sid = handshake.sid;
      if (handshake.pingInterval > 0) { this.pingInterval = handshake.pingInterval; }
      if (handshake.pingTimeout > 0) { this.pingTimeout = handshake.pingTimeout; }
      this.resetPingTimer();
      this.events.onOpen(transport.name);
      return;
    }
    switch (type) {
      case '2': // ping from the server: answer with pong, echoing any payload
        this.resetPingTimer();
        transport.send(['3' + data]);
        break;
      case '4':
        this.events.onData(data);
        break;
      case '1':
        this.end('server closed the session');
        break;
      default: // 0 again, 3 pong, 5 upgrade, 6 noop, b binary: nothing to do
        break;
    }
  };

  // The server pings every pingInterval; silence for pingInterval + pingTimeout means the
  // connection is dead even if the transport has not noticed.
  EngineConnection.prototype.resetPingTimer = function () {
    var self = this;
    clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(function () {
      if (self.transport) { self.onTransportClose(self.transport, 'ping timeout'); }
    }, this.pingInterval + this.pingTimeout);
  };

  EngineConnection.prototype.send = function (data) {
    if (this.opened && !this.closed) { this.transport.send(['4' + data]); }
  };

  // Quiet close initiated by us: the final messages, then the Engine.IO close packet.
  EngineConnection.prototype.close = function (finalMessages) {
    if (this.closed) { return; }
    this.closed = true;
    clearTimeout(this.openTimer);
    clearTimeout(this.pingTimer);
    if (!this.transport) { return; }
    var packets = null;
    if (this.opened) {
      packets = (finalMessages || []).map(function (m) { return '4' + m; });
      packets.push('1');
    }
    this.transport.close(packets);
  };

  EngineConnection.prototype.end = function (reason) {
    if (this.closed) { return; }
    this.closed = true;
    clearTimeout(this.openTimer);
    clearTimeout(this.pingTimer);
    if (this.transport) { this.transport.close(null); }
    this.events.onClose(reason);
  };

  // ---------------------------------------------------------------- Socket.IO (namespace "/")
  // Packet: <type>[<attachments>-][<namespace>,][<ack id>][JSON]

  function decodeSocketPacket(text) {
    var type = text.charCodeAt(0) - 48;
    if (!(type >= 0 && type <= 6)) { return null; }
    var i = 1;
    if (type === 5 || type === 6) { return { type: type, nsp: '/', id: null, data: undefined }; }
    var nsp = '/';
    if (text.charAt(i) === '/') {
      var comma = text.indexOf(',', i);
      if (comma < 0) { nsp = text.slice(i); i = text.length; } else { nsp = text.slice(i, comma); i = comma + 1; }
    }
    var j = i;
    while (j < text.length && text.charCodeAt(j) >= 48 && text.charCodeAt(j) <= 57) { j++; }
    var id = j > i ? Number(text.slice(i, j)) : null;
    var data;
    if (j < text.length) {
      try { data = JSON.parse(text.slice(j)); } catch (e) { return null; }
    }
    return { type: type, nsp: nsp, id: id, data: data };
  }

  // handlers: onConnect(transportName, session), onConnectError(message, data),
  // onEvent(name, args, offset), onDisconnect(reason, byServer), onFallback(reason)
  //
  // Connection-state recovery (socket.io 4.6+): `resume` ({sid, pid, offset}, or null) is the
  // session this connection asks the server to restore; its pid and offset go in the CONNECT
  // packet. onConnect's `session` is {sid, pid (null when the server does not offer recovery),
  // recovered, early}: recovered when the reply repeats resume's sid and pid; early counts the
  // `message` events that came before the reply (the missed ones the server replays first),
  // which are buffered and handed to onEvent right after onConnect, as socket.io-client does.
  function SocketClient(query, mode, handlers, resume) {
    this.query = query;
    this.mode = mode;
    this.handlers = handlers;
    this.resume = resume && typeof resume.pid === 'string' ? resume : null;
    this.pid = null;            // from the CONNECT reply; offsets are read only once we hold one
    this.early = [];            // events received before the CONNECT reply
    this.engine = null;
    this.connected = false;
    this.finished = false;
    this.transportName = null;
    this.nextAckId = 0;
    this.acks = {};
    this.connectTimer = null;
  }

  SocketClient.prototype.open = function () {
    var self = this;
    this.engine = new EngineConnection(this.query, this.mode, {
      onOpen: function (name) { self.onEngineOpen(name); },
      onFallback: function (reason) { self.handlers.onFallback(reason); },
      onData: function (data) { self.onEngineData(data); },
      onClose: function (reason) { self.finish(reason, false); }
    });
    this.engine.open();
  };

  SocketClient.prototype.onEngineOpen = function (transportName) {
    var self = this;
    this.transportName = transportName;
    var auth = '';
    if (this.resume) {
      var claim = { pid: this.resume.pid };
      if (typeof this.resume.offset === 'string') { claim.offset = this.resume.offset; }
      auth = JSON.stringify(claim);
    }
    this.engine.send('0' + auth);
    this.connectTimer = setTimeout(function () {
      self.finish('no Socket.IO connect reply', false);
    }, SIO_CONNECT_TIMEOUT_MS);
  };

  SocketClient.prototype.onEngineData = function (data) {
    if (this.finished) { return; }
    var packet = decodeSocketPacket(data);
    if (!packet || packet.nsp !== '/') { return; }
    switch (packet.type) {
      case 0: { // CONNECT
        if (this.connected) { return; }
        clearTimeout(this.connectTimer);
        this.connected = true;
        var reply = packet.data && typeof packet.data === 'object' ? packet.data : {};
        var sid = typeof reply.sid === 'string' ? reply.sid : null;
        this.pid = typeof reply.pid === 'string' && reply.pid ? reply.pid : null;
        var early = this.early;
        this.early = [];
        var session = {
          sid: sid,
          pid: this.pid,
          recovered: !!(this.resume && this.pid && this.pid === this.resume.pid && sid === this.resume.sid),
          early: early.filter(function (p) { return p.data[0] === 'message'; }).length
        };
        this.handlers.onConnect(this.transportName, session);
        for (var k = 0; k < early.length && this.connected && !this.finished; k++) {
          this.dispatchEvent(early[k]);
        }
        break;
      }
      case 4: { // CONNECT_ERROR
        clearTimeout(this.connectTimer);
        var info = packet.data || {};
        var message = typeof info === 'string' ? info : (typeof info.message === 'string' ? info.message : 'connection refused');
        this.finished = true;
        this.failAcks('connection refused');
        this.engine.close(null);
        this.handlers.onConnectError(message, info.data);
        break;
      }
      case 2: { // EVENT
        if (!Array.isArray(packet.data) || typeof packet.data[0] !== 'string') { return; }
        if (this.connected) { this.dispatchEvent(packet); } else { this.early.push(packet); }
        break;
      }
      case 3: { // ACK
        var callback = packet.id !== null ? this.acks[packet.id] : null;
        if (!callback) { return; }
        delete this.acks[packet.id];
        callback(Array.isArray(packet.data) ? packet.data : [], null);
        break;
      }
      case 1: // DISCONNECT from the server: it does not want us back
        this.finish('disconnected by the server', true);
        break;
      default: // binary packets are not part of the chat protocol
        break;
    }
  };

  // Once we hold a pid, the last argument of a `message` event, when it is a string, is the
  // event's offset: it is reported apart and is not part of the event's content.
  SocketClient.prototype.dispatchEvent = function (packet) {
    var name = packet.data[0];
    var args = packet.data.slice(1);
    var offset = null;
    if (this.pid && name === 'message' && args.length > 1 && typeof args[args.length - 1] === 'string') {
      offset = args.pop();
    }
    if (packet.id !== null) { this.engine.send('3' + packet.id + '[]'); }
    this.handlers.onEvent(name, args, offset);
  };

  // emit(name, payload[, ack(args, error)])
  SocketClient.prototype.emit = function (name, payload, ack) {
    if (!this.connected || this.finished) { return false; }
    var id = '';
    if (ack) {
      id = String(this.nextAckId++);
      this.acks[id] = ack;
    }
    this.engine.send('2' + id + JSON.stringify([name, payload]));
    return true;
  };

  SocketClient.prototype.failAcks = function (reason) {
    var pending = this.acks;
    this.acks = {};
    Object.keys(pending).forEach(function (id) { pending[id](null, reason); });
  };

  SocketClient.prototype.finish = function (reason, byServer) {
    if (this.finished) { return; }
    this.finished = true;
    this.connected = false;
    clearTimeout(this.connectTimer);
    if (this.engine) { this.engine.close(null); }
    this.failAcks('connection lost');
    this.handlers.onDisconnect(reason, byServer);
  };

  // Leave: Socket.IO DISCONNECT, then Engine.IO close; no callbacks afterwards.
  SocketClient.prototype.disconnect = function () {
    if (this.finished) { return; }
    this.finished = true;
    clearTimeout(this.connectTimer);
    this.acks = {};
    if (this.engine) { this.engine.close(this.connected ? ['1'] : null); }
    this.connected = false;
  };

  // ---------------------------------------------------------------- chat UI

  function $(id) { return document.getElementById(id); }

  function ChatApp() {
    this.el = {
      joinView: $('join-view'), joinForm: $('join-form'), room: $('room'), username: $('username'),
      join: $('join'), joinError: $('join-error'), chat: $('chat'), messages: $('messages'),
      sendForm: $('send-form'), text: $('text'), send: $('send'), status: $('status'),
      leave: $('leave'), roomLabel: $('room-label')
    };
    var params = new URLSearchParams(location.search);
    var transport = params.get('transport');
    this.mode = transport === 'polling' || transport === 'websocket' ? transport : 'auto';
    this.room = null;
    this.name = null;
    this.client = null;
    this.wanted = false;        // the user wants to be in the room (drives reconnects)
    this.joined = false;
    this.attempt = 0;
    this.reconnectTimer = null;
    this.everConnected = false;
    this.pendingOwn = [];       // texts we said and have not seen echoed yet
    this.session = null;        // {sid, pid, offset, joined} while the server offers recovery
    this.websocketBroken = false;
    this.lastError = null;      // { reason, at } of the last error notice
    if (params.get('room')) { this.el.room.value = params.get('room'); }
    if (params.get('name')) { this.el.username.value = params.get('name'); }
    this.bind();
    (this.el.room.value ? this.el.username : this.el.room).focus();
    if (this.el.room.value && this.el.username.value) { this.el.join.focus(); }
  }

  ChatApp.prototype.bind = function () {
    var self = this;
    this.el.joinForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      self.join(self.el.room.value.trim(), self.el.username.value.trim());
    });
    this.el.sendForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      self.say();
    });
    this.el.leave.addEventListener('click', function () { self.leave(); });
    window.addEventListener('online', function () {
      if (self.wanted && self.reconnectTimer) { clearTimeout(self.reconnectTimer); self.reconnectTimer = null; self.connect(); }
    });
    // Say goodbye when the page goes away; if it comes back from the back/forward cache, rejoin.
    window.addEventListener('pagehide', function () {
      if (self.client) { self.client.disconnect(); }
    });
    window.addEventListener('pageshow', function (ev) {
      if (ev.persisted && self.wanted) {
        clearTimeout(self.reconnectTimer);
        self.session = null;    // pagehide said goodbye: that session is over
        self.joined = false;
        self.setSendEnabled(false);
        self.connect();
      }
    });
  };

  ChatApp.prototype.setStatus = function (state, text, detail) {
    this.el.status.dataset.state = state;
    this.el.status.textContent = text;
    this.el.status.title = detail || '';
  };

  ChatApp.prototype.showJoinError = function (message) {
    this.el.joinError.textContent = message;
    this.el.joinError.hidden = !message;
  };

  ChatApp.prototype.join = function (room, name) {
    if (!room || !name) {
      this.showJoinError('Please enter a room and a name.');
      return;
    }
    this.showJoinError('');
    this.room = room;
    this.name = name;
    this.wanted = true;
    this.attempt = 0;
    this.everConnected = false;
    this.pendingOwn = [];
    this.session = null;
    this.el.messages.textContent = '';
    this.el.roomLabel.textContent = '# ' + room;
    this.el.roomLabel.hidden = false;
    this.el.joinView.hidden = true;
    this.el.chat.hidden = false;
    this.el.leave.hidden = false;
    this.setSendEnabled(false);
    var params = new URLSearchParams(location.search);
    params.set('room', room);
    params.set('name', name);
    try { history.replaceState(null, '', location.pathname + '?' + params.toString()); } catch (e) { /* ignore */ }
    this.connect();
    this.el.text.focus();
  };

  ChatApp.prototype.connect = function () {
    var self = this;
    this.reconnectTimer = null;
    if (this.attempt === 0) { this.setStatus('connecting', 'connecting'); }
    var mode = this.mode === 'auto' && this.websocketBroken ? 'polling' : this.mode;
    var fellBack = false;
    var client = new SocketClient({ roomid: this.room }, mode, {
      onConnect: function (transport, session) {
        // WebSocket failed but polling works (a proxy without upgrades, say): skip the
        // WebSocket attempt on later reconnects.
        if (fellBack && transport === 'polling') { self.websocketBroken = true; }
        self.onConnect(client, transport, session);
      },
      onConnectError: function (message) { self.onConnectError(client, message); },
      onEvent: function (name, args, offset) { self.onEvent(client, name, args, offset); },
      onDisconnect: function (reason, byServer) { self.onDisconnect(client, reason, byServer); },
      onFallback: function (reason) {
        fellBack = true;
        if (client === self.client) { self.el.status.title = 'WebSocket failed (' + reason + '), trying long-polling'; }
      }
    }, this.session);
    this.client = client;
    client.open();
  };

  ChatApp.prototype.onConnect = function (client, transport, session) {
    var self = this;
    if (client !== this.client) { return; }
    this.setStatus('connected', 'connected (' + transport + ')');
    var reconnected = this.everConnected;
    var resumed = client.resume !== null;
    this.everConnected = true;
    if (session.recovered && this.session.joined) {
      // The server restored our session: still in the room under our name, no join needed.
      // The missed messages it replayed before its reply follow right after this notice.
      this.joined = true;
      this.attempt = 0;
      this.setSendEnabled(true);
      var n = session.early;
      this.notice(n === 0 ? 'reconnected, nothing missed'
        : 'reconnected, ' + n + ' missed message' + (n === 1 ? '' : 's') + ' shown', null, 'recovered');
      return;
    }
    // A new session (or a restored one that had not joined yet): join as on the first connect.
    if (!session.recovered) {
      this.session = session.pid ? { sid: session.sid, pid: session.pid, offset: null, joined: false } : null;
      this.pendingOwn = [];
    }
    client.emit('join', { username: this.name }, function (args, error) {
      if (client !== self.client) { return; }
      var reply = args && args[0];
      if (error) { return; } // the disconnect handler reports it
      if (reply && reply.ok === false) {
        if (reply.error === 'invalid_username') {
          self.stop('The server refused the name: ' + reply.error, true);
        } else {
          self.reportError(reply.error, reply.message, 'Could not join: ');
        }
        return;
      }
      self.joined = true;
      self.attempt = 0;
      self.setSendEnabled(true);
      if (self.session) { self.session.joined = true; }
      if (resumed && !session.recovered) {
        self.notice('rejoined, messages may be missing', null, 'rejoined');
      } else if (reconnected) {
        self.notice('Reconnected.', null, 'info');
      }
    });
  };

  ChatApp.prototype.onConnectError = function (client, message) {
    if (client !== this.client) { return; }
    if (client.resume) {
      // Refused while asking for the old session back: forget it and come back as a new one.
      this.session = null;
      this.scheduleReconnect('connection refused: ' + message);
      return;
    }
    this.stop('Connection refused: ' + message, true);
  };

  ChatApp.prototype.onDisconnect = function (client, reason, byServer) {
    if (client !== this.client) { return; }
    var wasJoined = this.joined;
    this.joined = false;
    // A session the server holds for us may come back with our unechoed says in its replay.
    if (!this.session) { this.pendingOwn = []; }
    this.setSendEnabled(false);
    if (!this.wanted) { return; }
    if (byServer) {
      this.notice('Disconnected by the server.', null, 'error');
      this.stop(null, false);
      return;
    }
    if (wasJoined) {
      this.notice('Connection lost (' + reason + '). Reconnecting…', null, 'error');
    } else if (this.attempt === 0 && !this.everConnected) {
      this.notice('Could not connect (' + reason + '). Retrying…', null, 'error');
    }
    this.scheduleReconnect(reason);
  };

  // Capped exponential backoff with jitter, between BACKOFF_MIN_MS and BACKOFF_MAX_MS.
  ChatApp.prototype.scheduleReconnect = function (reason) {
    var self = this;
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, this.attempt));
    var delay = Math.max(BACKOFF_MIN_MS, Math.round(ceiling * (0.5 + Math.random() * 0.5)));
    this.attempt += 1;
    this.setStatus('reconnecting', 'reconnecting',
      'attempt ' + this.attempt + ' in ' + (delay / 1000).toFixed(1) + ' s; last error: ' + reason);
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(function () { self.connect(); }, delay);
  };

  // Give up on the room: back to the join form, optionally with an error there.
  ChatApp.prototype.stop = function (message, backToForm) {
    this.wanted = false;
    this.joined = false;
    this.session = null;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (this.client) { this.client.disconnect(); }
    this.setSendEnabled(false);
    this.setStatus('disconnected', 'disconnected', message || '');
    if (backToForm) {
      this.showForm();
      this.showJoinError(message || '');
    }
  };

  ChatApp.prototype.leave = function () {
    this.stop(null, true);
    this.client = null;
  };

  ChatApp.prototype.showForm = function () {
    this.el.chat.hidden = true;
    this.el.leave.hidden = true;
    this.el.roomLabel.hidden = true;
    this.el.joinView.hidden = false;
    this.el.username.focus();
  };

  ChatApp.prototype.setSendEnabled = function (enabled) {
    this.el.send.disabled = !enabled;
  };

  ChatApp.prototype.say = function () {
    var self = this;
    var text = this.el.text.value;
    if (!text.trim()) { return; }
    if (!this.joined || !this.client) {
      this.notice('Not connected; the message was not sent.', null, 'error');
      return;
    }
    var client = this.client;
    this.pendingOwn.push(text);
    var sent = client.emit('say', { text: text }, function (args, error) {
      if (client !== self.client) { return; }
      var reply = args && args[0];
      if (error) {
        self.notice('Message may not have been delivered (' + error + ').', null, 'error');
      } else if (reply && reply.ok === false) {
        self.forgetPending(text);
        self.reportError(reply.error, reply.message, 'Message not sent: ');
      }
    });
    if (sent) {
      this.el.text.value = '';
    } else {
      this.forgetPending(text);
    }
    this.el.text.focus();
  };

  ChatApp.prototype.forgetPending = function (text) {
    var i = this.pendingOwn.indexOf(text);
    if (i >= 0) { this.pendingOwn.splice(i, 1); }
  };

  // A say of ours comes back as broadcast_say with our name; another tab using the same
  // name shows as "other" because we did not send that text.
  ChatApp.prototype.isOwn = function (username, text) {
    if (username !== this.name || this.pendingOwn.length === 0) { return false; }
    var i = this.pendingOwn.indexOf(text);
    this.pendingOwn.splice(i >= 0 ? i : 0, 1);
    return true;
  };

  // args never include the offset: the client hands it apart, and it only names how far we got.
  ChatApp.prototype.onEvent = function (client, name, args, offset) {
    if (client !== this.client) { return; }
    if (offset !== null && offset !== undefined && this.session) { this.session.offset = offset; }
    var payload = args[0];
    if (name === 'message') {
      if (!payload || typeof payload !== 'object') { return; }
      var data = payload.data && typeof payload.data === 'object' ? payload.data : {};
      var username = typeof data.username === 'string' ? data.username : '';
      if (payload.event === 'broadcast_say') {
        var text = typeof data.text === 'string' ? data.text : String(data.text);
        this.renderSay(this.isOwn(username, text) ? 'own' : 'other', username, text);
      } else if (payload.event === 'join') {
        this.notice(username + ' joined', username, 'join');
      } else if (payload.event === 'broadcast_quit') {
        this.notice(username + ' left', username, 'quit');
      }
    } else if (name === 'error') {
      var info = payload && typeof payload === 'object' ? payload : {};
      this.reportError(info.reason, info.message, 'Error: ');
    }
  };

  // A rejected say may come back both as an `error` event and as a failed ack: report a
  // reason once per burst, which also keeps a rate-limited user from drowning in notices.
  ChatApp.prototype.reportError = function (reason, message, prefix) {
    reason = typeof reason === 'string' && reason ? reason : 'unknown error';
    message = typeof message === 'string' ? message : '';
    var now = Date.now();
    if (this.lastError && this.lastError.reason === reason && now - this.lastError.at < 1500) { return; }
    this.lastError = { reason: reason, at: now };
    this.notice(prefix + reason + (message ? ' — ' + message : ''), null, 'error');
  };

  ChatApp.prototype.append = function (li, force) {
    var list = this.el.messages;
    var nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    list.appendChild(li);
    while (list.childElementCount > MAX_RENDERED_MESSAGES) { list.removeChild(list.firstElementChild); }
    if (nearBottom || force) { list.scrollTop = list.scrollHeight; }
  };

  function timeLabel() {
    var now = new Date();
    return String(now.getHours()).padStart(2, '0') + ':' + String(now.getMinutes()).padStart(2, '0');
  }

  ChatApp.prototype.renderSay = function (kind, username, text) {
    var li = document.createElement('li');
    li.className = 'msg ' + kind;
    li.dataset.user = username;
    var meta = document.createElement('span');
    meta.className = 'meta';
    var who = document.createElement('span');
    who.className = 'user';
    who.textContent = username;
    var when = document.createElement('time');
    when.className = 'time';
    when.dateTime = new Date().toISOString();
    when.textContent = timeLabel();
    meta.appendChild(who);
    meta.appendChild(document.createTextNode(' '));
    meta.appendChild(when);
    var body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    li.appendChild(meta);
    li.appendChild(body);
    this.append(li, kind === 'own');
  };

  // kind: join | quit | info | error | recovered | rejoined
  ChatApp.prototype.notice = function (text, username, kind) {
    var li = document.createElement('li');
    li.className = 'notice ' + kind;
    if (username !== null && username !== undefined) { li.dataset.user = username; }
    var body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    li.appendChild(body);
    this.append(li, false);
  };

  if (typeof document !== 'undefined') {
    var start = function () { window.chatmesh = new ChatApp(); };
    if (document.readyState === 'loading') {
      document.addEventListener('DOMContentLoaded', start);
    } else {
      start();
    }
  }
  if (typeof module !== 'undefined' && module.exports) {
    module.exports = { decodeSocketPacket: decodeSocketPacket, SocketClient: SocketClient, EngineConnection: EngineConnection };
  }
})();