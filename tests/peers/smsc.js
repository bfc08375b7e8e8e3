#!/usr/bin/env node
// An SMSC built on node-smpp (the npm package "smpp"), for testing roxgate's SMPP
// connector against an implementation other than our own. See README.md.
//
//   node smsc.js MODE [--port N] [--host H] [--receipt-delay MS] [--throttle N]
//                     [--slow MS] [--drop-after N] [--drops K]
//                     [--system-id ID --password PW] [--id-style hex|dec]
//                     [--throttle-ms MS]
//
// Modes: normal; permanent (every submit refused, ESME_RINVDSTADR); throttle (each
// destination throttled --throttle times, or every submit for the first
// --throttle-ms ms); slow (answers --slow ms late); drop (the connection destroyed
// after --drop-after submits, --drops times); garbage (instead of answering the
// submit after --drop-after, bytes that are no PDU, --drops times); mute (never
// answers enquire_link); hang (after --drop-after submits the connection answers
// nothing more, but stays open; --drops connections do so).
//
// Prints "READY <port>" once listening, then one line per event:
//   SUBMIT {json}        every submit_sm received (raw wire fields, see below)
//   BIND {json}          bind attempts and their status
//   RECEIPT {json}       receipt deliver_sm sent;  RECEIPT_RESP {json} its response
//   MO_RESP {json}       response to an MO deliver_sm asked for on stdin
//   DROP {json}          a connection destroyed in "drop" mode
//   UNBIND / CLOSE / ERROR {json}
// Reads commands from stdin, one per line:  MO {"source":..,"destination":..,"text":..}
// Exits when stdin closes, or on SIGTERM / SIGINT.
'use strict';

const readline = require('readline');
const smpp = require('smpp');

const MODES = ['normal', 'permanent', 'throttle', 'slow', 'drop', 'garbage', 'mute', 'hang'];
const FAULT_MODES = ['drop', 'garbage', 'hang'];

function parseArgs(argv) {
	const opts = {
		mode: 'normal',
		host: '127.0.0.1',
		port: Number(process.env.SMSC_PORT || 0),
		receiptDelay: 100,
		throttle: 2,
		slow: 1000,
		dropAfter: 1,
		drops: 1,
		systemId: null,
		password: null,
		idStyle: 'hex',
		throttleMs: 0,
	};
	const names = {
		'--port': ['port', Number],
		'--host': ['host', String],
		'--receipt-delay': ['receiptDelay', Number],
		'--throttle': ['throttle', Number],
		'--slow': ['slow', Number],
		'--drop-after': ['dropAfter', Number],
		'--drops': ['drops', Number],
		'--system-id': ['systemId', String],
		'--password': ['password', String],
		'--id-style': ['idStyle', String],
		'--throttle-ms': ['throttleMs', Number],
	};
	let positional = 0;
	for (let i = 0; i < argv.length; i++) {
		const arg = argv[i];
		if (names[arg]) {
			const [key, convert] = names[arg];
			if (i + 1 >= argv.length) {
				fail('missing value after ' + arg);
			}
			opts[key] = convert(argv[++i]);
			if (typeof opts[key] === 'number' && !Number.isFinite(opts[key])) {
				fail('not a number after ' + arg);
			}
		} else if (!arg.startsWith('--') && positional === 0) {
			opts.mode = arg;
			positional++;
		} else {
			fail('unknown argument ' + arg);
		}
	}
	if (!MODES.includes(opts.mode)) {
		fail('mode must be one of ' + MODES.join(', '));
	}
	if (!['hex', 'dec'].includes(opts.idStyle)) {
		fail('--id-style must be hex or dec');
	}
	return opts;
}

function fail(message) {
	process.stderr.write('smsc.js: ' + message + '\n');
	process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));

function emit(kind, data) {
	process.stdout.write(kind + (data === undefined ? '' : ' ' + JSON.stringify(data)) + '\n');
}

// Keep each PDU's raw bytes, so SUBMIT lines show what was on the wire rather than
// node-smpp's decoded (charset-converted, UDH-split) view.
const originalFromBuffer = smpp.PDU.prototype.fromBuffer;
smpp.PDU.prototype.fromBuffer = function (buffer) {
	Object.defineProperty(this, 'raw', {value: buffer, enumerable: false});
	return originalFromBuffer.call(this, buffer);
};

// The submit_sm body, read straight from the bytes (SMPP 3.4 §4.4.1).
function parseSubmit(buf) {
	let off = 16;
	const cstr = () => {
		const end = buf.indexOf(0, off);
		if (end < 0) {
			throw new Error('C-string not terminated at offset ' + off);
		}
		const value = buf.toString('latin1', off, end);
		off = end + 1;
		return value;
	};
	const u8 = () => {
		if (off >= buf.length) {
			throw new Error('PDU too short');
		}
		return buf[off++];
	};
	const r = {};
	r.service_type = cstr();
	r.source_addr_ton = u8();
	r.source_addr_npi = u8();
	r.source_addr = cstr();
	r.dest_addr_ton = u8();
	r.dest_addr_npi = u8();
	r.destination_addr = cstr();
	r.esm_class = u8();
	r.protocol_id = u8();
	r.priority_flag = u8();
	r.schedule_delivery_time = cstr();
	r.validity_period = cstr();
	r.registered_delivery = u8();
	r.replace_if_present_flag = u8();
	r.data_coding = u8();
	r.sm_default_msg_id = u8();
	const smLength = u8();
	if (off + smLength > buf.length) {
		throw new Error('sm_length runs past the end');
	}
	r.sm_length = smLength;
	r.short_message = buf.toString('hex', off, off + smLength);
	off += smLength;
	r.tlvs = {};
	while (off + 4 <= buf.length) {
		const tag = buf.readUInt16BE(off);
		const length = buf.readUInt16BE(off + 2);
		off += 4;
		const key = '0x' + tag.toString(16).padStart(4, '0');
		r.tlvs[key] = buf.toString('hex', off, Math.min(off + length, buf.length));
		off += length;
	}
	return r;
}

let nextId = Date.now() * 1000;
function newMessageId() {
	nextId += 1;
	return opts.idStyle === 'hex' ? nextId.toString(16) : String(nextId);
}

function yymmddhhmm(date) {
	const p = (n) => String(n).padStart(2, '0');
	return (
		p(date.getUTCFullYear() % 100) + p(date.getUTCMonth() + 1) + p(date.getUTCDate()) +
		p(date.getUTCHours()) + p(date.getUTCMinutes())
	);
}

const sessions = new Set();
const pendingReceipts = new Map(); // system_id -> [deliver_sm options] while no receiver
const throttled = new Map(); // destination -> throttled count
let submitsSinceDrop = 0;
const startedAt = Date.now();
let connections = 0;
let dropsLeft = opts.drops;

function receivers(systemId) {
	return [...sessions].filter(
		(s) => s.bound && s.canReceive && !s.dead && (systemId === null || s.systemId === systemId)
	);
}

// A receipt stays in session.unacked until its deliver_sm_resp arrives; when the
// connection closes first, it is delivered again (to the next receiver bind), as an
// SMSC does with a deliver_sm it got no answer to.
function sendReceipt(session, receipt) {
	const fields = receipt.fields;
	receipt.attempt = (receipt.attempt || 0) + 1;
	session.unacked.add(receipt);
	const written = session.deliver_sm(fields, (resp) => {
		session.unacked.delete(receipt);
		emit('RECEIPT_RESP', {message_id: receipt.messageId, command_status: resp.command_status});
	});
	emit('RECEIPT', {
		message_id: receipt.messageId,
		system_id: session.systemId,
		connection: session.connection,
		attempt: receipt.attempt,
		text: fields.short_message.toString('latin1'),
	});
	if (!written) {
		// The socket is no longer writable: the close handler requeues it.
		session.dead = true;
	}
}

function deliverReceipt(origin, receipt) {
	let target = null;
	if (origin.canReceive && origin.bound && !origin.dead) {
		target = origin;
	} else {
		target = receivers(origin.systemId)[0] || null;
	}
	if (target) {
		sendReceipt(target, receipt);
	} else {
		if (!pendingReceipts.has(origin.systemId)) {
			pendingReceipts.set(origin.systemId, []);
		}
		pendingReceipts.get(origin.systemId).push(receipt);
	}
}

function scheduleReceipt(session, submit, messageId, submitted) {
	const text = Buffer.from(submit.short_message, 'hex').subarray(0, 20).toString('latin1');
	const body =
		'id:' + messageId + ' sub:001 dlvrd:001 submit date:' + yymmddhhmm(submitted) +
		' done date:' + yymmddhhmm(new Date()) + ' stat:DELIVRD err:000 text:' +
		text.replace(/[^\x20-\x7e]/g, '?');
	const receipt = {
		messageId: messageId,
		fields: {
			source_addr_ton: submit.dest_addr_ton,
			source_addr_npi: submit.dest_addr_npi,
			source_addr: submit.destination_addr,
			dest_addr_ton: submit.source_addr_ton,
			dest_addr_npi: submit.source_addr_npi,
			destination_addr: submit.source_addr,
			esm_class: 0x04,
			data_coding: 0,
			short_message: Buffer.from(body, 'latin1'),
			receipted_message_id: messageId,
			message_state: 2,
		},
	};
	setTimeout(() => deliverReceipt(session, receipt), opts.receiptDelay);
}

function onSubmit(session, pdu) {
	if (session.dead) {
		return;
	}
	if (!session.bound || !session.canTransmit) {
		session.send(pdu.response({command_status: smpp.ESME_RINVBNDSTS}));
		return;
	}
	let submit;
	try {
		submit = parseSubmit(pdu.raw);
	} catch (e) {
		emit('ERROR', {error: 'bad submit_sm: ' + e.message});
		session.send(pdu.response({command_status: smpp.ESME_RINVCMDLEN}));
		return;
	}
	const record = Object.assign(
		{sequence: pdu.sequence_number, system_id: session.systemId, connection: session.connection},
		submit
	);
	// Submits received on this connection and not answered yet, this one included
	// (the ESME's window as seen from here).
	session.outstanding += 1;
	record.outstanding = session.outstanding;

	if (session.hung) {
		record.status = null;
		emit('SUBMIT', record);
		return;
	}
	// drop, garbage, hang: after --drop-after submits, --drops times, this submit
	// gets the fault instead of an answer.
	if (FAULT_MODES.includes(opts.mode)) {
		submitsSinceDrop += 1;
		if (dropsLeft > 0 && submitsSinceDrop > opts.dropAfter) {
			dropsLeft -= 1;
			submitsSinceDrop = 0;
			record.status = null;
			emit('SUBMIT', record);
			if (opts.mode === 'drop') {
				emit('DROP', {sequence: pdu.sequence_number, drops_left: dropsLeft});
				session.dead = true;
				session.destroy();
			} else if (opts.mode === 'garbage') {
				emit('GARBAGE', {sequence: pdu.sequence_number, connection: session.connection});
				// A command_length no PDU can have, then noise: the ESME must reset the link.
				session.socket.write(Buffer.from('ffffff7f00000004deadbeefcafebabe0102', 'hex'));
				session.dead = true;
			} else {
				emit('HANG', {sequence: pdu.sequence_number, connection: session.connection});
				session.hung = true;
			}
			return;
		}
	}

	let status = 0;
	if (opts.mode === 'permanent') {
		status = smpp.ESME_RINVDSTADR;
	} else if (opts.mode === 'throttle' && opts.throttleMs > 0) {
		if (Date.now() - startedAt < opts.throttleMs) {
			status = smpp.ESME_RTHROTTLED;
		}
	} else if (opts.mode === 'throttle') {
		const seen = throttled.get(submit.destination_addr) || 0;
		if (seen < opts.throttle) {
			throttled.set(submit.destination_addr, seen + 1);
			status = smpp.ESME_RTHROTTLED;
		}
	}
	const messageId = status ? null : newMessageId();
	record.status = status;
	record.message_id = messageId;
	emit('SUBMIT', record);

	const respond = () => {
		session.outstanding -= 1;
		if (session.dead) {
			return;
		}
		if (status) {
			session.send(pdu.response({command_status: status}));
			return;
		}
		session.send(pdu.response({message_id: messageId}));
		if ((submit.registered_delivery & 3) === 1) {
			scheduleReceipt(session, submit, messageId, new Date());
		}
	};
	if (opts.mode === 'slow') {
		setTimeout(respond, opts.slow);
	} else {
		respond();
	}
}

function onBind(session, pdu, canTransmit, canReceive) {
	let status = 0;
	if (session.bound) {
		status = smpp.ESME_RALYBND;
	} else if (opts.systemId !== null && pdu.system_id !== opts.systemId) {
		status = smpp.ESME_RINVSYSID;
	} else if (opts.password !== null && pdu.password !== opts.password) {
		status = smpp.ESME_RINVPASWD;
	}
	emit('BIND', {command: pdu.command, system_id: pdu.system_id, status: status});
	if (status) {
		session.send(pdu.response({command_status: status}));
		return;
	}
	session.send(pdu.response({system_id: 'nodesmsc'}));
	session.bound = true;
	session.systemId = pdu.system_id;
	session.canTransmit = canTransmit;
	session.canReceive = canReceive;
	if (canReceive) {
		const waiting = pendingReceipts.get(session.systemId) || [];
		pendingReceipts.delete(session.systemId);
		waiting.forEach((receipt) => sendReceipt(session, receipt));
	}
}

const server = smpp.createServer((session) => {
	session.bound = false;
	session.dead = false;
	session.systemId = null;
	session.connection = ++connections; // 1, 2, ... in accept order
	session.outstanding = 0;
	session.hung = false;
	session.unacked = new Set(); // receipts sent, deliver_sm_resp not received
	sessions.add(session);
	session.on('bind_transceiver', (pdu) => onBind(session, pdu, true, true));
	session.on('bind_transmitter', (pdu) => onBind(session, pdu, true, false));
	session.on('bind_receiver', (pdu) => onBind(session, pdu, false, true));
	session.on('submit_sm', (pdu) => onSubmit(session, pdu));
	session.on('enquire_link', (pdu) => {
		if (opts.mode === 'mute' || session.hung) {
			emit('ENQUIRE_IGNORED', {connection: session.connection});
			return;
		}
		session.send(pdu.response());
	});
	session.on('unbind', (pdu) => {
		emit('UNBIND', {system_id: session.systemId});
		session.send(pdu.response());
		session.dead = true;
		session.close();
	});
	session.on('unknown', (pdu) => session.send(pdu.response()));
	session.on('error', (e) => {
		emit('ERROR', {error: String(e && e.message)});
		session.dead = true;
		session.destroy();
	});
	session.on('close', () => {
		session.dead = true;
		sessions.delete(session);
		emit('CLOSE', {
			system_id: session.systemId,
			connection: session.connection,
			outstanding: session.outstanding,
			unacked_receipts: session.unacked.size,
		});
		const unacked = [...session.unacked];
		session.unacked.clear();
		unacked.forEach((receipt) => deliverReceipt(session, receipt));
	});
});
server.on('error', (e) => {
	process.stderr.write('smsc.js: ' + e.message + '\n');
	process.exit(1);
});

function sendMo(command) {
	const target = receivers(command.system_id === undefined ? null : command.system_id)[0];
	if (!target) {
		emit('ERROR', {error: 'MO: no receiver bound'});
		return;
	}
	const text = String(command.text);
	const gsm = /^[\x20-\x7e\n\r]*$/.test(text) && !/[\[\]{}\\^~|`]/.test(text);
	target.deliver_sm(
		{
			source_addr_ton: command.source_addr_ton === undefined ? 1 : command.source_addr_ton,
			source_addr_npi: 1,
			source_addr: String(command.source).replace(/^\+/, ''),
			dest_addr_ton: 0,
			dest_addr_npi: 1,
			destination_addr: String(command.destination).replace(/^\+/, ''),
			esm_class: 0,
			data_coding: gsm ? 0 : 8,
			short_message: gsm ? Buffer.from(text, 'latin1') : Buffer.from(text, 'utf16le').swap16(),
		},
		(resp) => emit('MO_RESP', {command_status: resp.command_status})
	);
}

function shutdown() {
	for (const session of sessions) {
		session.destroy();
	}
	server.close();
	process.exit(0);
}

const input = readline.createInterface({input: process.stdin});
input.on('line', (line) => {
	const space = line.indexOf(' ');
	const verb = space < 0 ? line : line.slice(0, space);
	if (verb === 'MO') {
		try {
			sendMo(JSON.parse(line.slice(space + 1)));
		} catch (e) {
			emit('ERROR', {error: 'MO: ' + e.message});
		}
	} else if (verb.trim()) {
		emit('ERROR', {error: 'unknown command ' + verb});
	}
});
input.on('close', shutdown);
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.listen(opts.port, opts.host, () => {
	emit('READY', server.address().port);
});
