/* Custody Ledger: the court's verification page.
 *
 * An offline verifier of custody-bundle/v1 court bundles (steps B1-B12 of
 * docs/bundle.md) that gives exactly the verdict and the set of fault kinds of the
 * reference verifier, ledger/core/bundle.py verify_bundle. Where docs/bundle.md is less
 * precise than the reference (the full payload schemas of ledger/core/payloads.py,
 * Python's regular expressions, base64 and hex parsing), this follows the reference.
 *
 * Primitives: Ed25519 and SHA-256 from the browser's Web Crypto API; the evidence file
 * is hashed in bounded chunks with the vendored streaming SHA-256 of @noble/hashes
 * (window.nobleSha256). Nothing is fetched: the page works as a single file.
 *
 * window.CustodyVerifier = {
 *   verify(bundle, {logKey, witnesses, quorum, evidenceSha256}) -> Promise<result>,
 *   hashFile(file, onProgress) -> Promise<hex SHA-256>,
 * }
 * ``bundle`` is the bundle's JSON text (preferred: numbers keep their exact form) or an
 * already parsed object. A file that is not a bundle (B1) gives the result
 * {verdict: "malformed", error} and no verdict of the five.
 */
(function (root) {
  'use strict';

  // ---- constants (docs/bundle.md; ledger/core/events.py, payloads.py, vocab.py) -----------

  const FORMAT = 'custody-bundle/v1';
  const MAX_ENTRIES = 200000;
  const MAX_TIME = 253402300799999;
  const MAX_DEPTH = 32;
  const MAX_NOTE_BYTES = 1 << 20;
  const MAX_SIGNATURES = 100;
  const MAX_TREE_SIZE = (1n << 64n) - 1n;
  const MAX_TIMESTAMP = (1n << 63n) - 1n;
  const MAP_LEVELS = 16;
  const MAP_EXTENSION = 'custody-map/v1 ';
  const EVENT_DOMAIN = 'custody-ledger/v1/event\n';
  const DASH = '\u2014 ';
  const ALG_ED25519 = 0x01;
  const ALG_COSIGNATURE = 0x04;
  const CHUNK = 8 * 1024 * 1024;
  const MAX_BUNDLE_BYTES = 512 * 1024 * 1024;
  const ZERO = new Uint8Array(32);

  const KINDS = ['ledger.genesis', 'org.register', 'actor.enrol', 'actor.revoke', 'case.open',
    'case.add-member', 'legal-basis.record', 'artefact.register', 'custody.dispatch',
    'custody.receipt', 'access.record', 'verification.record', 'org.key', 'org.key.revoke',
    'auth.denied'];
  const ART_KINDS = ['custody.dispatch', 'custody.receipt', 'access.record',
    'verification.record'];
  const STRONG = ['sha256', 'sha512', 'blake3'];
  const DIGEST_HEX = { sha256: 64, sha512: 128, blake3: 64, md5: 32, sha1: 40 };
  const ROLES = ['examiner', 'custodian', 'prosecutor', 'court', 'auditor', 'admin'];
  const INSTRUMENTS = ['mlat', 'eio', 'epoc', 'epoc-pr', 'warrant', 'court-order', 'jit',
    'consent', 'other'];
  const ARTEFACT_TYPES = ['disk-image', 'mobile-extraction', 'memory-dump', 'file',
    'cloud-export', 'network-capture', 'other'];
  const ACCESS_ACTIONS = ['view', 'view-content', 'download', 'copy', 'export', 'analysis',
    'analysis-start', 'analysis-end', 'verify', 'print'];
  const COUNTRIES = new Set((
    'AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN ' +
    'BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ ' +
    'DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL ' +
    'GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM ' +
    'JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME ' +
    'MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP ' +
    'NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD ' +
    'SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO ' +
    'TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW').split(' '));
  /** The code points for which Python's str.isspace() is true. */
  const PY_SPACE = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85,
    0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008,
    0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]);

  // ---- errors ------------------------------------------------------------------------

  /** B1: the input is not a custody-bundle/v1 object (Python: VerificationError). */
  class Malformed extends Error {}
  /** A check failed (becomes a fault of the step's kind). */
  class Bad extends Error {}
  const bad = (msg) => { throw new Bad(msg); };

  // ---- JSON values with Python's view of numbers -------------------------------------

  /** A JSON number written with a fraction or an exponent whose value is integral
   * (Python reads it as a float: never an integer, an index or a time). */
  class PyFloat {
    constructor(value) { this.value = value; }
  }

  /** JSON.parse keeping what Python's json module distinguishes: integers beyond
   * 2^53 - 1 become BigInt (exact), integral numbers written as floats become PyFloat. */
  function parseJSON(text) {
    return JSON.parse(text, function (key, value, context) {
      if (typeof value !== 'number' || !context || typeof context.source !== 'string') {
        return value;
      }
      const src = context.source;
      if (/[.eE]/.test(src)) return Number.isInteger(value) ? new PyFloat(value) : value;
      if (!Number.isSafeInteger(value)) return BigInt(src);
      return value;
    });
  }

  /** Marks a message for translation (extracted by tests/court; translated by the page). */
  const N_ = (msgid) => msgid;
  const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
  /** Python's dict.get: undefined when missing. */
  const get = (o, k) => (hasOwn(o, k) ? o[k] : undefined);
  const isStr = (v) => typeof v === 'string';
  const isArr = Array.isArray;
  function isObj(v) {
    if (v === null || typeof v !== 'object' || isArr(v)) return false;
    const proto = Object.getPrototypeOf(v);
    return proto === Object.prototype || proto === null;
  }
  /** A Python int that is not a bool. */
  const isInt = (v) => (typeof v === 'number' && Number.isInteger(v)) || typeof v === 'bigint';
  const cpLen = (s) => Array.from(s).length;  // code points, as Python counts
  const strLen = (min, max) => (v) => isStr(v) && cpLen(v) >= min && cpLen(v) <= max;
  function hasPySpace(s) {
    for (const ch of s) if (PY_SPACE.has(ch.codePointAt(0))) return true;
    return false;
  }
  const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
  const wellFormed = (s) => (typeof s.isWellFormed === 'function' ? s.isWellFormed()
    : !LONE_SURROGATE.test(s));

  /** Python's ==, for JSON values (True == 1 == 1.0; None for a missing key). */
  function pyEq(a, b) {
    if (a === undefined) a = null;
    if (b === undefined) b = null;
    if (a === null || b === null) return a === b;
    const na = numeric(a);
    const nb = numeric(b);
    if (na !== undefined || nb !== undefined) {
      if (na === undefined || nb === undefined) return false;
      if (typeof na === 'bigint' || typeof nb === 'bigint') {
        if (!Number.isInteger(Number(na)) || !Number.isInteger(Number(nb))) return false;
        return BigInt(na) === BigInt(nb);
      }
      return na === nb;
    }
    if (isStr(a) || isStr(b)) return a === b;
    if (isArr(a) || isArr(b)) {
      return isArr(a) && isArr(b) && a.length === b.length && a.every((x, i) => pyEq(x, b[i]));
    }
    if (isObj(a) && isObj(b)) {
      const ka = Object.keys(a);
      if (ka.length !== Object.keys(b).length) return false;
      return ka.every((k) => hasOwn(b, k) && pyEq(a[k], b[k]));
    }
    return false;
  }
  function numeric(v) {
    if (typeof v === 'boolean') return v ? 1 : 0;
    if (typeof v === 'number' || typeof v === 'bigint') return v;
    if (v instanceof PyFloat) return v.value;
    return undefined;
  }

  /** RFC 8785 (JCS) text of a value; throws Bad where Python's ledger.core.canonical refuses. */
  function jcs(value) {
    if (value === null) return 'null';
    if (value === true) return 'true';
    if (value === false) return 'false';
    if (isStr(value)) {
      if (!wellFormed(value)) bad('a string is not valid Unicode');
      return JSON.stringify(value);
    }
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) bad('a number is not finite');
      if (Number.isInteger(value) && !Number.isSafeInteger(value)) {
        bad('an integer beyond 2^53 - 1 has no JCS encoding');
      }
      return JSON.stringify(value);
    }
    if (value instanceof PyFloat) {
      if (!Number.isFinite(value.value)) bad('a number is not finite');
      return JSON.stringify(value.value);
    }
    if (typeof value === 'bigint') bad('an integer beyond 2^53 - 1 has no JCS encoding');
    if (isArr(value)) return '[' + value.map(jcs).join(',') + ']';
    if (isObj(value)) {
      const keys = Object.keys(value).sort();  // UTF-16 code units, as RFC 8785 says
      return '{' + keys.map((k) => {
        if (!wellFormed(k)) bad('a key is not valid Unicode');
        return JSON.stringify(k) + ':' + jcs(value[k]);
      }).join(',') + '}';
    }
    bad('not a JSON value');
  }

  // ---- bytes -----------------------------------------------------------------------------

  const encoder = new TextEncoder();
  function utf8(s) {
    if (!wellFormed(s)) bad('text is not valid Unicode');
    return encoder.encode(s);
  }
  function concat(parts) {
    let n = 0;
    for (const p of parts) n += p.length;
    const out = new Uint8Array(n);
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  function bytesEq(a, b) {
    if (a.length !== b.length) return false;
    let d = 0;
    for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
    return d === 0;
  }
  function bytesCmp(a, b) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      if (a[i] !== b[i]) return a[i] - b[i];
    }
    return a.length - b.length;
  }
  const HEX_DIGIT = /^[0-9a-fA-F]$/;
  /** binascii.unhexlify of a str: ASCII, even length, hex digits of either case. */
  function unhexlify(s) {
    if (s.length % 2) bad('odd-length hex');
    const out = new Uint8Array(s.length / 2);
    for (let i = 0; i < s.length; i += 2) {
      if (!HEX_DIGIT.test(s[i]) || !HEX_DIGIT.test(s[i + 1])) bad('not hex');
      out[i / 2] = parseInt(s.slice(i, i + 2), 16);
    }
    return out;
  }
  /** bytes.fromhex: pairs of hex digits, ASCII whitespace allowed between pairs. */
  function fromhex(s) {
    const out = [];
    let i = 0;
    while (i < s.length) {
      if (' \t\n\r\x0b\x0c'.includes(s[i])) { i += 1; continue; }
      if (i + 1 >= s.length || !HEX_DIGIT.test(s[i]) || !HEX_DIGIT.test(s[i + 1])) {
        bad('not hex');
      }
      out.push(parseInt(s.slice(i, i + 2), 16));
      i += 2;
    }
    return new Uint8Array(out);
  }

  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const B64_VALUE = new Map(Array.from(B64, (c, i) => [c, i]));
  /** base64.b64decode(s, validate=True) of Python 3.11 (binascii strict mode). */
  function b64decode(s) {
    if (!isStr(s)) bad('not a base64 string');
    const out = [];
    let quad = 0;
    let pads = 0;
    let padding = false;
    let acc = 0;
    for (let i = 0; i < s.length; i++) {
      const ch = s[i];
      if (ch === '=') {
        padding = true;
        if (i === 0) bad('leading padding');
        pads += 1;
        if (quad >= 2 && quad + pads >= 4) {
          if (i + 1 < s.length) bad('data after padding');
          return new Uint8Array(out);
        }
        continue;
      }
      const v = B64_VALUE.get(ch);
      if (v === undefined) bad('not base64');
      if (padding) bad('discontinuous padding');
      pads = 0;
      acc = (acc << 6) | v;
      quad = (quad + 1) % 4;
      if (quad === 2) out.push((acc >> 4) & 0xff);
      else if (quad === 3) out.push((acc >> 2) & 0xff);
      else if (quad === 0) { out.push(acc & 0xff); acc = 0; }
      acc &= 0xfff;
    }
    if (quad !== 0) bad('incorrect padding');
    return new Uint8Array(out);
  }
  function b64encode(bytes) {
    let out = '';
    for (let i = 0; i < bytes.length; i += 3) {
      const n = (bytes[i] << 16) | ((bytes[i + 1] || 0) << 8) | (bytes[i + 2] || 0);
      out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
      out += i + 1 < bytes.length ? B64[(n >> 6) & 63] : '=';
      out += i + 2 < bytes.length ? B64[n & 63] : '=';
    }
    return out;
  }
  /** ledger.core.note.b64decode_strict: valid and canonical base64. */
  function b64canonical(s) {
    const raw = b64decode(s);
    if (b64encode(raw) !== s) bad('not canonical base64');
    return raw;
  }

  // ---- primitives: SHA-256 and Ed25519 (Web Crypto) ---------------------------------------

  const subtle = () => {
    if (!root.crypto || !root.crypto.subtle) {
      throw new Error('this browser offers no Web Crypto API (open the page from a file)');
    }
    return root.crypto.subtle;
  };
  async function sha256(...parts) {
    return new Uint8Array(await subtle().digest('SHA-256', concat(parts)));
  }

  /* libsodium's crypto_sign_verify_detached (what the reference verifier uses, through
   * PyNaCl) refuses what plain RFC 8032 verification accepts: a non-canonical S, a
   * small-order R, a non-canonical or small-order public key. The same checks run here
   * before Web Crypto's verification. */
  const ORDER_L = [0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2,
    0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
  const SMALL_ORDER = [
    '0000000000000000000000000000000000000000000000000000000000000000',
    '0100000000000000000000000000000000000000000000000000000000000000',
    '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
    'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  ];
  function scalarCanonical(s) {
    for (let i = 31; i >= 0; i--) {
      if (s[i] < ORDER_L[i]) return true;
      if (s[i] > ORDER_L[i]) return false;
    }
    return false;
  }
  function smallOrder(p) {
    const q = p.slice();
    q[31] &= 0x7f;
    return SMALL_ORDER.includes(toHex(q));
  }
  function pointCanonical(p) {
    if ((p[31] & 0x7f) !== 0x7f || p[0] < 0xed) return true;
    for (let i = 1; i < 31; i++) if (p[i] !== 0xff) return true;
    return false;
  }
  const keyCache = new Map();
  async function ed25519(publicKey, message, signature) {
    if (publicKey.length !== 32 || signature.length !== 64) return false;
    if (!scalarCanonical(signature.subarray(32)) || smallOrder(signature.subarray(0, 32))) {
      return false;
    }
    if (!pointCanonical(publicKey) || smallOrder(publicKey)) return false;
    const id = toHex(publicKey);
    try {
      if (!keyCache.has(id)) {
        keyCache.set(id, await subtle().importKey('raw', publicKey, { name: 'Ed25519' },
          false, ['verify']));
      }
      return await subtle().verify({ name: 'Ed25519' }, keyCache.get(id), signature, message);
    } catch (exc) {
      // A browser without Ed25519 must not turn every signature into a fault.
      if (exc && exc.name === 'NotSupportedError') throw exc;
      return false;
    }
  }

  // ---- B1: the file -------------------------------------------------------------------------

  function need(obj, key) {
    if (!hasOwn(obj, key)) throw new Malformed(`missing member ${JSON.stringify(key)}`);
    return obj[key];
  }
  /** Python's iteration of a JSON value: lists, dict keys, str characters. */
  function pyIter(v) {
    if (isArr(v)) return v;
    if (isObj(v)) return Object.keys(v);
    if (isStr(v)) return Array.from(v);
    throw new Malformed('a list was expected');
  }
  function hex32(text) {
    if (!isStr(text)) throw new Malformed('a hash is not a string');
    let raw;
    try {
      raw = unhexlify(text);
    } catch (exc) {
      throw new Malformed(`${JSON.stringify(text)} is not hex`);
    }
    if (raw.length !== 32) throw new Malformed('a hash is 32 bytes');
    return raw;
  }

  function parseEntry(obj) {
    if (!isObj(obj)) throw new Malformed('an entry must be an object');
    const index = need(obj, 'index');
    const leaf = need(obj, 'leaf');
    const proof = need(obj, 'inclusion');
    if (!isInt(index) || index < 0) {
      throw new Malformed('an entry index must be a non-negative integer');
    }
    if (!isStr(leaf) || !isArr(proof)) {
      throw new Malformed("an entry needs base64 'leaf' and a list 'inclusion'");
    }
    const hashes = proof.map((h) => {
      if (!isStr(h) || cpLen(h) !== 64) {
        throw new Malformed('inclusion proof hashes are 64 hex characters');
      }
      try {
        return fromhex(h);
      } catch (exc) {
        throw new Malformed('an inclusion hash is not hex');
      }
    });
    let bytes;
    try {
      bytes = b64decode(leaf);
    } catch (exc) {
      throw new Malformed('an entry leaf is not base64');
    }
    return { index, leaf: bytes, inclusion: hashes };
  }

  function parseMapProof(obj) {
    if (!isObj(obj)) throw new Malformed('malformed map proof');
    const key = need(obj, 'key');
    const value = need(obj, 'value');
    if (!isStr(key) || !(value === null || isObj(value))) {
      throw new Malformed('malformed map proof: a string key and an object or null value');
    }
    const others = pyIter(need(obj, 'bucket')).map((item) => {
      const pair = pyIter(item);
      if (pair.length !== 2) throw new Malformed('malformed map proof: a bucket item is a pair');
      return [hex32(pair[0]), hex32(pair[1])];
    });
    const path = pyIter(need(obj, 'path')).map(hex32);
    return { key, value, others, path };
  }

  /** B1 (ledger.core.bundle.Bundle.from_json): throws Malformed. */
  function parseBundle(obj) {
    if (!isObj(obj)) throw new Malformed('not a JSON object');
    if (!pyEq(get(obj, 'format'), FORMAT)) {
      throw new Malformed(`unsupported bundle format; this verifier reads ${FORMAT}`);
    }
    const origin = need(obj, 'origin');
    const checkpoint = need(obj, 'checkpoint');
    const subject = need(obj, 'subject');
    if (!isStr(origin) || !isStr(checkpoint)) {
      throw new Malformed('origin and checkpoint must be strings');
    }
    const names = isObj(subject) ? Object.keys(subject) : [];
    if (names.length !== 1 || !['artefact', 'sha256'].includes(names[0])
        || !isStr(subject[names[0]])) {
      throw new Malformed("subject must be {'artefact': ID} or {'sha256': HEX}");
    }
    const rawEntries = need(obj, 'entries');
    const rawMaps = need(obj, 'maps');
    if (!isArr(rawEntries) || !isArr(rawMaps)) {
      throw new Malformed('entries and maps must be lists');
    }
    if (rawEntries.length > MAX_ENTRIES) throw new Malformed(`more than ${MAX_ENTRIES} entries`);
    const entries = rawEntries.map(parseEntry);
    const maps = rawMaps.map(parseMapProof);
    const logKey = hasOwn(obj, 'log_key') ? obj.log_key : '';
    if (!isStr(logKey)) throw new Malformed('log_key must be a string');
    return { origin, checkpoint, subject: { [names[0]]: subject[names[0]] }, entries, maps,
      logKey };
  }

  // ---- B2/B3: signed notes, checkpoints, cosignatures ---------------------------------------

  const CONTROL_NOTE = /[\x00-\x09\x0b-\x1f]/;
  const CONTROL_LINE = /[\x00-\x1f]/;

  function checkName(name) {
    if (!isStr(name) || !name) bad('a key name must be a non-empty string');
    if (name.includes('+') || hasPySpace(name) || CONTROL_NOTE.test(name)) {
      bad(`key name ${JSON.stringify(name)} contains a space, '+' or a control character`);
    }
  }
  async function keyHash(name, alg, publicKey) {
    checkName(name);
    return (await sha256(utf8(name), new Uint8Array([0x0a, alg]), publicKey)).slice(0, 4);
  }
  async function parseVerifierKey(vkey, alg) {
    if (!isStr(vkey)) bad('a verifier key must be a string');
    const i = vkey.indexOf('+');
    const j = i < 0 ? -1 : vkey.indexOf('+', i + 1);
    if (j < 0) bad('a verifier key has the form name+keyid+base64key');
    const name = vkey.slice(0, i);
    const keyidHex = vkey.slice(i + 1, j);
    checkName(name);
    if (!/^[0-9a-f]{8}$/.test(keyidHex)) bad('a verifier key ID must be 8 lowercase hex digits');
    const raw = b64canonical(vkey.slice(j + 1));
    if (raw.length !== 33 || raw[0] !== alg) {
      bad(`the verifier key is not a type 0x0${alg} Ed25519 key`);
    }
    const publicKey = raw.slice(1);
    const kh = await keyHash(name, alg, publicKey);
    if (toHex(kh) !== keyidHex) bad('the verifier key ID does not match its name and key');
    return { name, keyHash: kh, publicKey };
  }

  function splitNote(note) {
    if (!isStr(note)) bad('malformed note: not a string');
    if (utf8(note).length > MAX_NOTE_BYTES) bad('malformed note: larger than 1 MiB');
    if (CONTROL_NOTE.test(note)) bad('malformed note: contains a control character');
    const cut = note.lastIndexOf('\n\n');
    if (cut < 0) bad('malformed note: no blank line before the signatures');
    const text = note.slice(0, cut + 1);
    const block = note.slice(cut + 2);
    if (!block.endsWith('\n')) bad('malformed note: the signature block must end in a newline');
    const lines = block.slice(0, -1).split('\n');
    if (lines.length > MAX_SIGNATURES) bad('malformed note: more than 100 signatures');
    const sigs = lines.map((line) => {
      if (!line.startsWith(DASH)) bad('malformed note: a signature line starts with an em dash');
      const fields = line.slice(DASH.length).split(' ');
      if (fields.length !== 2) bad('malformed note: a signature line is a name and a signature');
      checkName(fields[0]);
      const raw = b64canonical(fields[1]);
      if (raw.length < 5) bad('malformed note: a signature is shorter than 5 bytes');
      return { name: fields[0], keyHash: raw.slice(0, 4), signature: raw.slice(4) };
    });
    return { text, sigs };
  }

  function parseCheckpointText(text) {
    if (!text.endsWith('\n')) bad('malformed checkpoint: the text must end in a newline');
    const lines = text.slice(0, -1).split('\n');
    if (lines.length < 3) bad('malformed checkpoint: fewer than three lines');
    const [origin, sizeLine, rootLine, ...extensions] = lines;
    if (!origin) bad('malformed checkpoint: empty origin line');
    if (!/^(0|[1-9][0-9]{0,19})$/.test(sizeLine)) bad('malformed checkpoint: bad tree size');
    const rootHash = b64canonical(rootLine);
    if (rootHash.length !== 32) bad('malformed checkpoint: the root hash is not 32 bytes');
    const size = BigInt(sizeLine);
    if (CONTROL_LINE.test(origin)) bad('malformed checkpoint: a control character in the origin');
    if (size > MAX_TREE_SIZE) bad('malformed checkpoint: the size does not fit in 64 bits');
    for (const line of extensions) {
      if (!line || CONTROL_LINE.test(line)) bad('malformed checkpoint: a bad extension line');
    }
    return { origin, size, root: rootHash, extensions };
  }
  const checkpointBody = (cp) => [cp.origin, String(cp.size), b64encode(cp.root),
    ...cp.extensions].map((l) => l + '\n').join('');

  /** ledger.core.checkpoint.verify_checkpoint with the pinned log key. */
  async function verifyCheckpoint(note, logKey, checks) {
    const verifier = await parseVerifierKey(logKey, ALG_ED25519);
    const { text, sigs } = splitNote(note);
    const message = utf8(text);
    let verified = false;
    for (const sig of sigs) {
      if (sig.name !== verifier.name || !bytesEq(sig.keyHash, verifier.keyHash)) continue;
      if (!(await ed25519(verifier.publicKey, message, sig.signature))) {
        bad(`invalid signature for key ${sig.name}+${toHex(sig.keyHash)}`);
      }
      checks.log_signatures += 1;
      verified = true;
    }
    if (!verified) bad('the note has no signature from a trusted key');
    const cp = parseCheckpointText(text);
    if (cp.origin !== verifier.name) {
      bad(`foreign checkpoint: origin ${JSON.stringify(cp.origin)}, expected ` +
        JSON.stringify(verifier.name));
    }
    return cp;
  }

  /** ledger.core.checkpoint.verify_cosignatures: a quorum of distinct trusted witnesses. */
  async function verifyCosignatures(note, witnessKeys, quorum, checks) {
    const table = new Map();
    const publicKeys = new Set();
    for (const vkey of witnessKeys) {
      const w = await parseVerifierKey(vkey, ALG_COSIGNATURE);
      const id = w.name + '\u0000' + toHex(w.keyHash);
      if (table.has(id) || publicKeys.has(toHex(w.publicKey))) {
        bad(`witness key ${w.name}+${toHex(w.keyHash)} is configured twice`);
      }
      table.set(id, w);
      publicKeys.add(toHex(w.publicKey));
    }
    if (!isInt(quorum) || quorum < 1 || quorum > table.size) {
      bad(`quorum ${quorum} is not between 1 and ${table.size} witnesses`);
    }
    const { text, sigs } = splitNote(note);
    const body = checkpointBody(parseCheckpointText(text));
    const valid = [];
    for (const sig of sigs) {
      const w = table.get(sig.name + '\u0000' + toHex(sig.keyHash));
      if (!w) continue;
      const label = `${sig.name}+${toHex(sig.keyHash)}`;
      if (sig.signature.length !== 72) bad(`cosignature from ${label} has the wrong length`);
      let t = 0n;
      for (let i = 0; i < 8; i++) t = (t << 8n) | BigInt(sig.signature[i]);
      if (t > MAX_TIMESTAMP) bad(`cosignature from ${label} has an out-of-range timestamp`);
      const message = utf8(`cosignature/v1\ntime ${t.toString()}\n${body}`);
      if (!(await ed25519(w.publicKey, message, sig.signature.subarray(8)))) {
        bad(`invalid cosignature from witness ${label}`);
      }
      checks.cosignatures += 1;
      if (!valid.includes(w.name)) valid.push(w.name);
    }
    if (valid.length < quorum) {
      bad(`cosignature quorum not met: ${valid.length} valid of ${quorum} required ` +
        `(${table.size} witnesses known)`);
    }
    return valid;
  }

  /** ledger.core.vmap.root_of: the state-map root of the checkpoint's extension lines. */
  function mapRootOf(extensions) {
    const found = extensions.filter((l) => l.startsWith(MAP_EXTENSION));
    if (!found.length) return null;
    if (found.length > 1) bad('a checkpoint carries two state-map roots');
    let raw;
    try { raw = b64decode(found[0].slice(MAP_EXTENSION.length)); } catch (exc) {
      bad('malformed state-map root in the checkpoint');
    }
    if (raw.length !== 32) bad('malformed state-map root in the checkpoint');
    return raw;
  }

  // ---- B4: inclusion and leaves ------------------------------------------------------------

  const bitLength = (n) => (n === 0n ? 0 : n.toString(2).length);
  const popCount = (n) => Array.from(n.toString(2)).filter((c) => c === '1').length;

  /** RFC 9162 §2.1.3.2 (ledger.core.merkle_verify.verify_inclusion). */
  async function verifyInclusion(leafHash, index, size, proof, rootHash) {
    for (const p of proof) if (p.length !== 32) bad('a proof element is not a 32-byte hash');
    const idx = BigInt(index);
    if (idx >= size) bad(`leaf index ${idx} is not inside a tree of size ${size}`);
    const inner = bitLength(idx ^ (size - 1n));
    const want = inner + popCount(idx >> BigInt(inner));
    if (proof.length !== want) {
      bad(`inclusion proof of ${proof.length} hashes, a proof of leaf ${idx} in a tree of ` +
        `size ${size} has ${want}`);
    }
    let fn = idx;
    let sn = size - 1n;
    let r = leafHash;
    const one = new Uint8Array([1]);
    for (const p of proof) {
      if (sn === 0n) bad('inclusion proof too long for this tree');
      if ((fn & 1n) || fn === sn) {
        r = await sha256(one, p, r);
        while (!(fn & 1n) && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await sha256(one, r, p);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) bad('inclusion proof too short for this tree');
    if (!bytesEq(r, rootHash)) {
      bad(`inclusion proof of leaf ${idx} does not lead to the root of tree size ${size}`);
    }
  }

  function checkDepth(value, depth) {
    if (depth > MAX_DEPTH) bad(`JSON nested deeper than ${MAX_DEPTH} levels`);
    if (isArr(value)) for (const v of value) checkDepth(v, depth + 1);
    else if (isObj(value)) for (const k of Object.keys(value)) checkDepth(value[k], depth + 1);
  }
  const sameKeys = (obj, keys) => isObj(obj) && Object.keys(obj).length === keys.length
    && keys.every((k) => hasOwn(obj, k));
  const checkTime = (v) => isInt(v) && v >= 0 && v <= MAX_TIME;
  // Python's re.match with "^...$": "$" also matches before a final newline.
  const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\n?$/;
  const isId = (v) => isStr(v) && ID_RE.test(v);

  // ---- the payload schemas of ledger/core/payloads.py (pydantic, strict, extra=forbid) ----------

  const V = {
    id: isId,
    text: strLen(0, 2000),
    name: strLen(1, 200),
    str100: strLen(0, 100),
    country: (v) => isStr(v) && COUNTRIES.has(v),
    hex64: (v) => isStr(v) && /^[0-9a-f]{64}$/.test(v),
    keyId: (v) => isStr(v) && /^[0-9a-f]{16}$/.test(v),
    publicKey: (v) => isStr(v) && /^[A-Za-z0-9+/]{43}=$/.test(v),
    age: (v) => isStr(v) && /^age1[02-9ac-hj-np-z]{58}$/.test(v),
    date: (v) => isStr(v) && /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/.test(v) && validDate(v),
    int: (min, max) => (v) => isInt(v) && v >= min && (max === undefined || v <= max),
    oneOf: (...values) => (v) => values.some((x) => x === v),
    nullable: (f) => (v) => v === null || f(v),
    list: (f, min, max, unique) => (v) => isArr(v) && v.length >= min && v.length <= max
      && v.every(f) && (!unique || new Set(v).size === v.length),
    dictStr: (v) => isObj(v) && Object.keys(v).every((k) => isStr(v[k])),
  };
  function validDate(v) {
    const [y, m, d] = v.split('-').map(Number);
    if (y < 1 || m < 1 || m > 12 || d < 1) return false;
    const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
    return d <= [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1];
  }
  function digests(needSha256) {
    return (v) => V.dictStr(v) && Object.keys(v).every((alg) => hasOwn(DIGEST_HEX, alg)
      && new RegExp(`^[0-9a-f]{${DIGEST_HEX[alg]}}$`).test(v[alg]))
      && (!needSha256 || hasOwn(v, 'sha256'));
  }
  /** A strict model: required fields, optional fields (with defaults), nothing else. */
  function model(required, optional) {
    return (v) => {
      if (!isObj(v)) return false;
      for (const k of Object.keys(v)) {
        const f = hasOwn(required, k) ? required[k] : (hasOwn(optional, k) ? optional[k] : null);
        if (!f || !f(v[k])) return false;
      }
      return Object.keys(required).every((k) => hasOwn(v, k));
    };
  }
  const ORG_INFO = model({ id: V.id, name: V.name, jurisdiction: V.country }, {});
  const ACTOR_INFO = model({ id: V.id, org: V.id, name: V.name,
    roles: V.list(V.oneOf(...ROLES), 1, 6, true), public_key: V.publicKey }, {});
  const SEALS = V.list(V.str100, 0, 100);
  const ACQUISITION = model({}, { tool: V.text, version: V.text, method: V.text,
    performer: V.text, started: V.text, ended: V.text, location: V.text });
  const PACKAGE = model({ sha256: V.hex64, size: V.int(0, 2 ** 53), format: V.oneOf('age-v1'),
    recipient: V.keyId, digests: digests(true) }, { also_to: V.list(V.keyId, 0, 10, true) });
  const SCHEMAS = {
    'ledger.genesis': model({ log_key: strLen(0, 400), skew_ms: V.int(1000, 86400000),
      org: ORG_INFO, actor: ACTOR_INFO }, { rules: V.oneOf(1, 2, true) }),
    'org.register': ORG_INFO,
    'actor.enrol': ACTOR_INFO,
    'actor.revoke': model({ actor: V.id }, { reason: V.text }),
    'org.key': model({ org: V.id, recipient: V.age }, {}),
    'org.key.revoke': model({ org: V.id, key_id: V.keyId }, { reason: V.text }),
    'auth.denied': model({ actor: V.id, reason: V.text }, { certificate_org: strLen(0, 256),
      certificate_subject: strLen(0, 512), certificate_sha256: V.nullable(V.hex64),
      address: V.str100 }),
    'case.open': model({ id: V.id }, { title: V.text }),
    'case.add-member': model({ case: V.id, org: V.id }, {}),
    'legal-basis.record': model({ id: V.id, instrument: V.oneOf(...INSTRUMENTS),
      reference: V.name, issuing_state: V.country, executing_state: V.country,
      valid_from: V.date, valid_until: V.date }, { issuing_authority: V.text,
      executing_authority: V.text, case: V.nullable(V.id),
      artefacts: V.list(V.id, 0, 1000), restrictions: V.list(V.text, 0, 50),
      document_sha256: V.nullable(V.hex64) }),
    'artefact.register': model({ id: V.id, case: V.id, size: V.int(0, 2 ** 53),
      digests: digests(true) }, { exhibit: V.str100, type: V.oneOf(...ARTEFACT_TYPES),
      description: V.text, container: V.str100, embedded_digests: digests(false),
      acquisition: V.nullable(ACQUISITION), parents: V.list(V.id, 0, 100),
      duplicate_of: V.nullable(V.id) }),
    'custody.dispatch': model({ transfer: V.id, artefact: V.id, to_org: V.id,
      purpose: V.name }, { to_actor: V.nullable(V.id), legal_basis: V.nullable(V.id),
      transport: model({}, { method: V.text, reference: V.text }), seals: SEALS,
      package: V.nullable(PACKAGE) }),
    'custody.receipt': model({ transfer: V.id, artefact: V.id,
      outcome: V.oneOf('accepted', 'rejected'),
      recomputed: (v) => digests(true)(v) && Object.keys(v).every((a) => STRONG.includes(a)) },
    { reason: V.text, seals: SEALS, package_sha256: V.nullable(V.hex64),
      seal_discrepancy: V.text }),
    'access.record': model({ artefact: V.id, action: V.oneOf(...ACCESS_ACTIONS),
      purpose: V.name, outcome: V.oneOf('success', 'denied') }, { authorisation: V.text,
      source: V.oneOf('cli', 'api', 'chaincode', 'other') }),
    'verification.record': model({ artefact: V.id, sha256: V.hex64,
      verdict: V.oneOf('authentic', 'mismatch'), tree_size: V.int(0) }, {}),
  };

  const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const EVENT_KEYS = ['v', 'kind', 'origin', 'nonce', 'claimed_time', 'signer', 'key_id',
    'prev', 'payload'];

  /** ledger.core.events.Entry.from_leaf and ledger.core.payloads.validate; throws on any fault. */
  function parseLeaf(bytes) {
    const text = utf8Strict.decode(bytes);
    const obj = parseJSON(text);
    checkDepth(obj, 1);
    if (!sameKeys(obj, ['index', 'ledger_time', 'event'])) bad('leaf keys');
    if (!isInt(obj.index) || obj.index < 0) bad('leaf index');
    if (!checkTime(obj.ledger_time)) bad('ledger_time');
    const signed = obj.event;
    if (!sameKeys(signed, ['event', 'sig'])) bad('signed event keys');
    if (!isStr(signed.sig)) bad('sig');
    const sig = b64decode(signed.sig);
    if (sig.length !== 64 || b64encode(sig) !== signed.sig) bad('sig is not canonical');
    const e = signed.event;
    if (!sameKeys(e, EVENT_KEYS)) bad('event keys');
    if (typeof e.v === 'boolean' || !pyEq(e.v, 1)) bad('version');
    if (!isStr(e.kind) || !KINDS.includes(e.kind)) bad('kind');
    if (!isStr(e.origin) || cpLen(e.origin) < 1 || cpLen(e.origin) > 256
        || hasPySpace(e.origin) || e.origin.includes('+')) bad('origin');
    if (!isStr(e.nonce) || !/^[0-9a-f]{32}\n?$/.test(e.nonce)) bad('nonce');
    if (!isStr(e.key_id) || !/^[0-9a-f]{8}$/.test(e.key_id)) bad('key_id');
    if (e.prev !== null && !(isStr(e.prev) && /^[0-9a-f]{64}\n?$/.test(e.prev))) bad('prev');
    if (!isObj(e.payload)) bad('payload');
    if (!checkTime(e.claimed_time)) bad('claimed_time');
    if (!isId(e.signer)) bad('signer');
    if (jcs(obj) !== text) bad('leaf bytes are not in RFC 8785 canonical form');
    if (!SCHEMAS[e.kind](e.payload)) bad(`invalid ${e.kind} payload`);
    return { index: obj.index, ledgerTime: obj.ledger_time, signed, event: e, sig };
  }

  function subjectsOf(event) {
    const p = event.payload;
    if (event.kind === 'artefact.register') return ['art/' + p.id, 'sha256/' + p.digests.sha256];
    if (ART_KINDS.includes(event.kind)) return ['art/' + p.artefact];
    return [];
  }

  // ---- B5: the state map ---------------------------------------------------------------------

  async function mapNode(left, right) {
    if (bytesEq(left, ZERO) && bytesEq(right, ZERO)) return ZERO;
    return sha256(new Uint8Array([3]), left, right);
  }

  /** ledger.core.vmap.verify_map_proof. */
  async function verifyMapProof(mapRoot, proof) {
    if (proof.key.startsWith('nonce/')) {
      bad(`key ${JSON.stringify(proof.key)} is not covered by the state map`);
    }
    const kh = await sha256(utf8(proof.key));
    const bucket = (kh[0] << 8) | kh[1];
    const seen = new Set(proof.others.map((o) => toHex(o[0])));
    if (seen.has(toHex(kh)) || seen.size !== proof.others.length) {
      bad(`map proof for ${JSON.stringify(proof.key)} lists a key twice`);
    }
    if (proof.others.some((o) => ((o[0][0] << 8) | o[0][1]) !== bucket)) {
      bad(`map proof for ${JSON.stringify(proof.key)} mixes keys of another bucket`);
    }
    const items = proof.others.map((o) => concat(o));
    if (proof.value !== null) items.push(concat([kh, await sha256(utf8(jcs(proof.value)))]));
    items.sort(bytesCmp);
    let h = items.length ? await sha256(new Uint8Array([2]), ...items) : ZERO;
    if (proof.path.length !== MAP_LEVELS) {
      bad(`a map proof has ${MAP_LEVELS} path hashes, not ${proof.path.length}`);
    }
    for (let level = 0; level < MAP_LEVELS; level++) {
      h = (bucket >> level) & 1 ? await mapNode(proof.path[level], h)
        : await mapNode(h, proof.path[level]);
    }
    if (!bytesEq(h, mapRoot)) {
      bad(`the ${proof.value === null ? 'absence' : 'value'} of ${JSON.stringify(proof.key)} ` +
        'does not match the state-map root signed in the checkpoint');
    }
  }

  // ---- B2-B12: the verification --------------------------------------------------------------

  const idxKey = (i) => String(i);
  const idxCmp = (a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0);
  const jsonNumber = (n) => (typeof n === 'bigint'
    ? (n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n.toString())
    : n instanceof PyFloat ? n.value : n);
  const quote = (v) => JSON.stringify(v === undefined ? null : v, (k, x) => (
    typeof x === 'bigint' ? x.toString() : x instanceof PyFloat ? x.value : x));

  function newResult() {
    return {
      verdict: 'fault', faults: [], artefact_id: null, sha256: null, registered_sha256: null,
      registered_digests: {}, size: null, case: null, exhibit: null, custodian: null,
      open_transfer: null, incidents: 0, complete: false, timeline: [], checkpoint: null,
      witnesses: [], also_registered_as: [],
      checks: { log_signatures: 0, checkpoint: false, witnesses_demanded: false,
        cosignatures: 0, witness_policy_met: false, entries: 0, inclusion: 0, leaves: 0,
        maps: 0, map_proofs: 0, signatures: 0, signatures_checked: 0, signers: 0, history: 0,
        history_checked: false, history_ok: false },
    };
  }

  async function fold(leafHashes) {
    let acc = ZERO;
    for (const h of leafHashes) acc = await sha256(acc, h);
    return toHex(acc);
  }

  class Run {
    constructor(bundle, opts) {
      this.bundle = bundle;
      this.opts = opts;
      this.result = newResult();
      this.faults = this.result.faults;
    }

    fault(kind, detail, key = null, index = null) {
      this.faults.push({ kind, detail, key, index: index === null ? null : jsonNumber(index) });
    }

    done() {
      if (this.faults.length) this.result.verdict = 'fault';
      return this.result;
    }

    async verify() {
      const { bundle, opts, result } = this;
      const checks = result.checks;
      const ev = opts.evidenceSha256;
      let sha = ev ? String(ev).toLowerCase() : null;
      let subjectId = hasOwn(bundle.subject, 'artefact') ? bundle.subject.artefact : null;
      result.sha256 = sha;
      result.artefact_id = subjectId;
      checks.entries = bundle.entries.length;
      checks.maps = bundle.maps.length;
      // B2. The checkpoint: signed by the pinned log key, origin = the key's name.
      let cp;
      try {
        cp = await verifyCheckpoint(bundle.checkpoint, opts.logKey, checks);
      } catch (exc) {
        if (!(exc instanceof Bad)) throw exc;
        this.fault('checkpoint', 'the checkpoint does not verify with the pinned log key: ' +
          exc.message);
        return this.done();
      }
      checks.checkpoint = true;
      if (bundle.origin !== cp.origin) {
        this.fault('checkpoint', `the bundle says origin ${quote(bundle.origin)} but its ` +
          `checkpoint is for ${quote(cp.origin)}`);
      }
      // B3. Witnesses (a quorum demanded with no keys is a fault, never skipped).
      const witnesses = opts.witnesses || [];
      const quorum = opts.quorum === undefined || opts.quorum === null ? 0 : opts.quorum;
      if (witnesses.length || quorum) {
        checks.witnesses_demanded = true;
        try {
          result.witnesses = await verifyCosignatures(bundle.checkpoint, witnesses, quorum,
            checks);
          checks.witness_policy_met = true;
        } catch (exc) {
          if (!(exc instanceof Bad)) throw exc;
          this.fault('witness', 'witness policy not met: ' + exc.message);
        }
      }
      let mapRoot = null;
      try {
        mapRoot = mapRootOf(cp.extensions);
      } catch (exc) {
        if (!(exc instanceof Bad)) throw exc;
        this.fault('map', exc.message);
      }
      result.checkpoint = { origin: cp.origin, size: jsonNumber(cp.size), root: toHex(cp.root),
        map_root: mapRoot === null ? '' : toHex(mapRoot), note: bundle.checkpoint };
      if (mapRoot === null) {
        if (!this.faults.length) {
          this.fault('map', 'the checkpoint carries no state-map root, so completeness ' +
            'cannot be proven');
        }
        return this.done();
      }
      // B4. Entries: inclusion of the exact leaf bytes at the checkpoint.
      const entries = new Map();
      for (const item of bundle.entries) {
        const k = idxKey(item.index);
        if (entries.has(k)) {
          this.fault('leaf', `entry ${item.index} appears twice`, null, item.index);
          continue;
        }
        const leafHash = await sha256(new Uint8Array([0]), item.leaf);
        try {
          await verifyInclusion(leafHash, item.index, cp.size, item.inclusion, cp.root);
        } catch (exc) {
          if (!(exc instanceof Bad)) throw exc;
          this.fault('inclusion', `entry ${item.index} is not in the log at size ${cp.size}: ` +
            exc.message, null, item.index);
          continue;
        }
        checks.inclusion += 1;
        let entry;
        try {
          entry = parseLeaf(item.leaf);
        } catch (exc) {
          this.fault('leaf', `entry ${item.index} does not parse: ${exc.message}`, null,
            item.index);
          continue;
        }
        if (!pyEq(entry.index, item.index)) {
          this.fault('leaf', `entry ${item.index} says it is entry ${entry.index}`, null,
            item.index);
          continue;
        }
        if (entry.event.origin !== cp.origin) {
          this.fault('leaf', `entry ${item.index} is an event of ledger ` +
            `${quote(entry.event.origin)}, not ${quote(cp.origin)}`, null, item.index);
          continue;
        }
        checks.leaves += 1;
        entries.set(k, { index: item.index, entry, leafHash, proof: item.inclusion });
      }
      this.entries = entries;
      // B5. State-map proofs.
      const proven = new Map();
      for (const proof of bundle.maps) {
        if (proven.has(proof.key)) {
          this.fault('map', `two map proofs for ${quote(proof.key)}`, proof.key);
          continue;
        }
        try {
          await verifyMapProof(mapRoot, proof);
        } catch (exc) {
          if (!(exc instanceof Bad)) throw exc;
          this.fault('map', exc.message, proof.key);
          continue;
        }
        checks.map_proofs += 1;
        proven.set(proof.key, proof.value);
      }
      this.proven = proven;
      // B6. Resolve the subject (an artefact id, or every registration of a digest).
      if (subjectId === null) {
        const digest = bundle.subject.sha256.toLowerCase();
        if (sha === null) sha = digest;
        result.sha256 = sha;
        const key = 'hist/sha256/' + digest;
        if (!proven.has(key)) {
          this.fault('incomplete', `no proof for ${quote(key)}: cannot tell whether the ` +
            'digest is registered', key);
          return this.done();
        }
        const regs = await this.history(key, proven.get(key), 'sha256/' + digest);
        if (proven.get(key) === null) {
          result.verdict = 'not-registered';
          result.complete = true;
          return this.done();
        }
        const ids = regs.map((r) => r.entry.event.payload.id);
        if (!ids.length) {
          this.fault('incomplete', `the checkpoint proves ${quote(key)} but no registration ` +
            'of the digest is in the bundle', key);
          return this.done();
        }
        subjectId = ids[0];
        result.artefact_id = subjectId;
        result.also_registered_as = ids.slice(1);
      }
      const key = 'hist/art/' + subjectId;
      if (!proven.has(key)) {
        this.fault('incomplete', `no proof for ${quote(key)}: the artefact's history cannot ` +
          'be shown complete', key);
        return this.done();
      }
      if (proven.get(key) === null) {
        result.verdict = 'not-registered';
        result.complete = true;
        return this.done();
      }
      // B7. Completeness: the artefact's entries fold to the proven accumulator.
      const chain = await this.history(key, proven.get(key), 'art/' + subjectId);
      result.complete = !this.faults.some((f) => f.kind === 'incomplete');
      // B8-B10. Keys, signatures and the custody chain.
      const state = await this.replay(chain, subjectId);
      // B11. The artefact's state record, if proven, must agree with the replay.
      const artKey = 'art/' + subjectId;
      const rec = proven.get(artKey);
      if (state !== null && rec !== undefined && rec !== null) {
        for (const name of ['custodian', 'head', 'open_transfer', 'incidents', 'digests',
          'case']) {
          if (!pyEq(get(rec, name), state[name])) {
            this.fault('state', `the signed state record ${quote(artKey)} says ${name} = ` +
              `${quote(get(rec, name))} but its proven events give ${quote(state[name])}`,
            artKey);
          }
        }
      }
      if (state === null) return this.done();
      Object.assign(result, {
        registered_digests: { ...state.digests }, registered_sha256: state.digests.sha256,
        size: jsonNumber(state.size), case: state.case, exhibit: state.exhibit,
        custodian: state.custodian, open_transfer: state.open_transfer,
        incidents: state.incidents, timeline: state.timeline,
      });
      // B12. The verdict.
      if (this.faults.length) result.verdict = 'fault';
      else if (sha === null) result.verdict = 'verified';
      else result.verdict = state.digests.sha256 === sha ? 'authentic' : 'mismatch';
      return this.done();
    }

    /** B7: the accepted entries of ``subject``, checked against its proven accumulator. */
    async history(key, value, subject) {
      const chain = Array.from(this.entries.values())
        .filter((e) => subjectsOf(e.entry.event).includes(subject))
        .sort((a, b) => idxCmp(a.index, b.index));
      if (value === null) {
        if (chain.length) {
          this.fault('incomplete', `${chain.length} bundled entries belong to ` +
            `${quote(subject)}, which the checkpoint proves has no history`, key);
        }
        return chain;
      }
      const n = get(value, 'n');
      const got = await fold(chain.map((e) => e.leafHash));
      const checks = this.result.checks;
      checks.history_checked = true;
      checks.history = chain.length;
      checks.history_ok = true;
      if (!pyEq(chain.length, n) || !pyEq(got, get(value, 'acc'))
          || (chain.length && !pyEq(chain[chain.length - 1].index, get(value, 'last')))) {
        this.fault('incomplete', `the checkpoint proves ${quote(n)} entries of ` +
          `${quote(subject)} (last at index ${quote(get(value, 'last'))}) but the bundle's ` +
          `${chain.length} entries do not fold to its accumulator: an event is missing, ` +
          'extra or altered', key);
        checks.history_ok = false;
      }
      return chain;
    }

    /** B8-B10: signer keys, signatures, and custody along the artefact's chain. */
    async replay(chain, artefact) {
      const first = chain.length ? chain[0].entry.event : null;
      if (!first || first.kind !== 'artefact.register'
          || !pyEq(get(first.payload, 'id'), artefact)) {
        this.fault('chain', `the first event of ${quote(artefact)} is not its registration`);
        return null;
      }
      const timeline = [];
      let st = null;
      let open = null;
      const signers = new Set();
      for (const item of chain) {
        const { entry } = item;
        const event = entry.event;
        const p = event.payload;
        const i = item.index;
        const eventId = toHex(await sha256(utf8(jcs(entry.signed))));
        const actor = await this.signer(entry, i);
        signers.add(event.signer);
        const orgId = actor ? orgOf(actor) : '?';
        const org = this.proven.get('org/' + orgId);
        let summary;
        let args = {};
        const details = {};
        if (event.kind === 'artefact.register' && st) {
          this.fault('chain', `entry ${i} registers ${artefact} again; the registration at ` +
            `entry ${chain[0].index} stands`, null, i);
          summary = N_('registered again in case %(case)s');
          args = { case: p.case };
        } else if (event.kind === 'artefact.register') {
          st = { digests: { ...p.digests }, size: p.size, case: p.case,
            exhibit: hasOwn(p, 'exhibit') ? p.exhibit : '', custodian: orgId, head: eventId,
            open_transfer: null, incidents: 0 };
          summary = N_('registered in case %(case)s');
          args = { case: p.case };
          details.sha256 = p.digests.sha256;
        } else if (event.kind === 'custody.dispatch' || event.kind === 'custody.receipt') {
          if (!pyEq(event.prev, st.head)) {
            this.fault('chain', `entry ${i} does not follow the artefact's previous custody ` +
              `event (prev ${event.prev}, head ${st.head})`, null, i);
          }
          if (event.kind === 'custody.dispatch') {
            if (orgId !== st.custodian || open !== null) {
              this.fault('chain', `entry ${i}: ${orgId} dispatched ${artefact} while ` +
                `${st.custodian} held it${open ? ' with a dispatch open' : ''}`, null, i);
            }
            const lb = get(p, 'legal_basis');
            this.legalBasis(lb === undefined ? null : lb, i);
            open = { transfer: p.transfer, to_org: p.to_org };
            st.open_transfer = p.transfer;
            summary = N_('dispatched to %(org)s');
            args = { org: p.to_org };
            details.transfer = p.transfer;
            details.legal_basis = lb === undefined ? null : lb;
          } else {
            if (open === null || open.transfer !== p.transfer || orgId !== open.to_org) {
              this.fault('chain', `entry ${i}: receipt of ${p.transfer} by ${orgId} does not ` +
                'close the open dispatch', null, i);
            }
            if (p.outcome === 'accepted') {
              const differ = Object.keys(st.digests).filter((a) => STRONG.includes(a))
                .some((a) => !pyEq(get(p.recomputed, a), st.digests[a]));
              if (differ) {
                this.fault('chain', `entry ${i}: accepted although the recomputed digests ` +
                  'differ from the registered ones', null, i);
              }
              st.custodian = open ? open.to_org : orgId;
              if (get(p, 'seal_discrepancy')) st.incidents += 1;
            } else {
              st.incidents += 1;
            }
            open = null;
            st.open_transfer = null;
            summary = N_('receipt %(outcome)s');
            args = { outcome: p.outcome };
            details.transfer = p.transfer;
          }
          st.head = eventId;
        } else if (event.kind === 'access.record') {
          summary = N_('access %(action)s (%(outcome)s)');
          args = { action: p.action, outcome: p.outcome };
        } else if (event.kind === 'verification.record') {
          summary = N_('verified: %(verdict)s');
          args = { verdict: p.verdict };
        } else {
          summary = event.kind;
        }
        timeline.push({
          index: jsonNumber(i), ledger_time_ms: jsonNumber(entry.ledgerTime),
          ledger_time: iso(entry.ledgerTime), kind: event.kind, event_id: eventId,
          leaf_hash: toHex(item.leafHash), signer: event.signer,
          signer_name: actor && isStr(get(actor, 'name')) ? actor.name : '', org: orgId,
          jurisdiction: org && isObj(org) && isStr(get(org, 'jurisdiction'))
            ? org.jurisdiction : '',
          key_id: event.key_id, summary: format(summary, args), summary_id: summary,
          summary_args: args, details,
        });
      }
      this.result.checks.signers = signers.size;
      st.timeline = timeline;
      return st;
    }

    /** B8-B9: the signer's key from its proven actor record and enrolment entry. */
    async signer(entry, index) {
      const event = entry.event;
      const key = 'actor/' + event.signer;
      const actor = this.proven.get(key);
      if (actor === undefined || actor === null) {
        this.fault('key', `entry ${index}: no proven record of signer ${quote(event.signer)}`,
          key, index);
        return null;
      }
      let publicKey;
      let enrolled;
      let revoked;
      try {
        publicKey = b64decode(get(actor, 'public_key'));
        if (!hasOwn(actor, 'enrolled_at')) bad('enrolled_at');
        enrolled = actor.enrolled_at;
        revoked = hasOwn(actor, 'revoked_at') ? actor.revoked_at : null;
        if (!isInt(enrolled) || !(revoked === null || isInt(revoked)) || !isStr(orgOf(actor))) {
          bad('enrolled_at, revoked_at or org');
        }
      } catch (exc) {
        if (!(exc instanceof Bad)) throw exc;
        this.fault('key', `the proven record ${quote(key)} is malformed`, key, index);
        return null;
      }
      let signatureOk = false;
      this.result.checks.signatures_checked += 1;
      try {
        const kid = toHex(await keyHash(event.signer, ALG_ED25519, publicKey));
        if (kid !== event.key_id) {
          bad(`event key id ${event.key_id} is not the key of actor ${event.signer}`);
        }
        const message = concat([utf8(EVENT_DOMAIN), utf8(jcs(event))]);
        if (!(await ed25519(publicKey, message, entry.sig))) {
          bad('the Ed25519 signature does not verify');
        }
        signatureOk = true;
      } catch (exc) {
        if (!(exc instanceof Bad)) throw exc;
        this.fault('signature', `entry ${index}: signature of ${event.signer} does not ` +
          `verify: ${exc.message}`, key, index);
      }
      if (signatureOk) this.result.checks.signatures += 1;
      if (!(enrolled <= index) || (revoked !== null && revoked <= index)) {
        this.fault('key', `entry ${index}: ${event.signer}'s key was not valid then ` +
          `(enrolled at ${enrolled}, revoked at ${revoked})`, key, index);
      }
      const enrol = this.entries.get(idxKey(enrolled));
      let ok = false;
      if (enrol !== undefined) {
        const e = enrol.entry.event;
        if (e.kind === 'ledger.genesis') {
          ok = e.payload.actor.id === event.signer
            && e.payload.actor.public_key === actor.public_key;
        } else if (e.kind === 'actor.enrol') {
          ok = e.payload.id === event.signer && e.payload.public_key === actor.public_key;
        }
      }
      if (!ok) {
        this.fault('key', `entry ${index}: the enrolment entry ${enrolled} of ` +
          `${event.signer} is missing from the bundle or enrols another key`, key, index);
      }
      return actor;
    }

    legalBasis(lbId, index) {
      if (lbId === null) return null;
      const rec = this.proven.get('lb/' + lbId);
      const at = rec && Object.keys(rec).length ? get(rec, 'recorded_at') : undefined;
      const entry = isInt(at) ? this.entries.get(idxKey(at)) : undefined;
      if (entry === undefined || entry.entry.event.kind !== 'legal-basis.record'
          || !pyEq(get(entry.entry.event.payload, 'id'), lbId)) {
        this.fault('legal-basis', `entry ${index} cites legal basis ${quote(lbId)}, whose ` +
          'signed entry is not proven in the bundle', 'lb/' + lbId, index);
        return null;
      }
      return entry.entry.event.payload;
    }
  }

  const orgOf = (actor) => (hasOwn(actor, 'org') ? actor.org : '?');
  function iso(ms) {
    const n = Number(ms);
    const d = new Date(n);
    return Number.isFinite(d.getTime()) ? d.toISOString() : String(ms);
  }
  /** Python's "%(name)s" formatting of a (translated) message. */
  function format(message, args) {
    return message.replace(/%\((\w+)\)s/g, (m, name) => (hasOwn(args, name)
      ? String(args[name]) : m));
  }

  /**
   * Verify a bundle (its JSON text, or a parsed object) against the log key and,
   * optionally, witness keys with a quorum and the evidence file's SHA-256.
   */
  async function verify(bundle, options) {
    const opts = options || {};
    let obj = bundle;
    if (typeof bundle === 'string') {
      try {
        obj = parseJSON(bundle);
      } catch (exc) {
        return malformed(`not JSON (${exc.message})`);
      }
    }
    let parsed;
    try {
      parsed = parseBundle(obj);
    } catch (exc) {
      if (exc instanceof Malformed) return malformed(exc.message);
      throw exc;
    }
    const run = new Run(parsed, {
      logKey: opts.logKey === undefined ? '' : opts.logKey,
      witnesses: Array.from(opts.witnesses || []),
      quorum: opts.quorum,
      evidenceSha256: opts.evidenceSha256 || null,
    });
    return run.verify();
  }

  function malformed(message) {
    const result = newResult();
    result.verdict = 'malformed';
    result.error = 'malformed bundle: ' + message;
    return result;
  }

  /**
   * SHA-256 of a File or Blob, read in chunks of 8 MiB so memory stays bounded:
   * Web Crypto for a file of one chunk, the streaming SHA-256 of @noble/hashes beyond.
   * ``onProgress(done, total)`` is called after every chunk.
   */
  async function hashFile(file, onProgress) {
    const total = file.size;
    const report = (done) => { if (onProgress) onProgress(done, total); };
    report(0);
    if (total <= CHUNK) {
      const digest = await sha256(new Uint8Array(await file.arrayBuffer()));
      report(total);
      return toHex(digest);
    }
    if (!root.nobleSha256) throw new Error('the streaming SHA-256 is missing from the page');
    const hash = root.nobleSha256.sha256.create();
    for (let at = 0; at < total; at += CHUNK) {
      const end = Math.min(at + CHUNK, total);
      hash.update(new Uint8Array(await file.slice(at, end).arrayBuffer()));
      report(end);
    }
    return toHex(hash.digest());
  }

  root.CustodyVerifier = { verify, hashFile, format, parseJSON, jcs, b64decode,
    MAX_BUNDLE_BYTES };

  // ---- the page --------------------------------------------------------------------------------

  if (typeof document === 'undefined') return;

  const messages = readJSON('i18n') || {};
  const _ = (msgid, args) => format(hasOwn(messages, msgid) && messages[msgid]
    ? messages[msgid] : msgid, args || {});
  const $ = (id) => document.getElementById(id);

  function readJSON(id) {
    const el = document.getElementById(id);
    if (!el) return null;
    return JSON.parse(el.textContent);
  }

  const VERDICT_LABELS = {
    authentic: N_('Authentic: the evidence file is the registered one'),
    mismatch: N_('Mismatch: the evidence file is NOT the registered one'),
    verified: N_('Verified: the custody history is proven complete and consistent'),
    'not-registered': N_('Not registered: the checkpoint proves there is no such artefact'),
    fault: N_('Fault: the bundle does not verify; nothing in it is to be relied on'),
    malformed: N_('Malformed: this file is not a custody bundle'),
  };
  const KIND_LABELS = {
    checkpoint: N_('The checkpoint is not signed by the log key, or is for another log'),
    witness: N_('The witness policy is not met'),
    map: N_('A state-map proof does not hold'),
    inclusion: N_('An entry is not in the log at its index'),
    leaf: N_('An entry is duplicated, unreadable, or of another index or log'),
    incomplete: N_('The history cannot be shown complete'),
    key: N_("A signer's key is unknown, not valid then, or not enrolled"),
    signature: N_('An event signature does not verify'),
    chain: N_('The events do not form a valid custody chain'),
    'legal-basis': N_('A cited legal basis is not proven'),
    state: N_('The signed state record disagrees with the events'),
  };

  const state = {
    embedded: null,
    bundleFile: null,
    evidenceFile: null,
    evidenceHash: null,
  };

  function setStatus(id, text) {
    const el = $(id);
    if (el) el.textContent = text;
  }

  function initPage() {
    const embedded = document.getElementById('embedded-bundle');
    if (embedded) {
      state.embedded = embedded.textContent;
      let label = '';
      try {
        const subject = JSON.parse(state.embedded).subject || {};
        label = subject.artefact || subject.sha256 || '';
      } catch (exc) {
        label = '';
      }
      setStatus('bundle-status', _('Embedded bundle: %(subject)s', { subject: label }));
    } else {
      setStatus('bundle-status', _('No bundle chosen yet.'));
    }
    setStatus('evidence-status', _('No evidence file chosen: the page checks the history only.'));
    $('bundle-file').addEventListener('change', () => chooseBundle($('bundle-file').files[0]));
    $('evidence-file').addEventListener('change',
      () => chooseEvidence($('evidence-file').files[0]));
    wireDrop('bundle-drop', chooseBundle);
    wireDrop('evidence-drop', chooseEvidence);
    $('verify').addEventListener('click', () => { runVerify(); });
    const print = $('print');
    if (print) print.addEventListener('click', () => window.print());
    document.body.dataset.ready = 'true';
  }

  function wireDrop(id, choose) {
    const zone = $(id);
    if (!zone) return;
    zone.addEventListener('dragover', (e) => {
      e.preventDefault();
      zone.classList.add('dragging');
    });
    zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
    zone.addEventListener('drop', (e) => {
      e.preventDefault();
      zone.classList.remove('dragging');
      const files = e.dataTransfer && e.dataTransfer.files;
      if (files && files.length) choose(files[0]);
    });
  }

  function chooseBundle(file) {
    if (!file) return;
    state.bundleFile = file;
    setStatus('bundle-status', _('Bundle file: %(name)s (%(size)s bytes)',
      { name: file.name, size: file.size }));
    clearResult();
  }

  function chooseEvidence(file) {
    if (!file) return;
    state.evidenceFile = file;
    setStatus('evidence-status', _('Evidence file: %(name)s (%(size)s bytes)',
      { name: file.name, size: file.size }));
    setStatus('evidence-sha256', '');
    clearResult();
    const progress = $('hash-progress');
    const started = file;
    state.evidenceHash = hashFile(file, (done, total) => {
      progress.max = total || 1;
      progress.value = total ? done : 1;
      progress.textContent = total ? `${Math.floor((100 * done) / total)} %` : '100 %';
    }).then((hex) => {
      if (state.evidenceFile === started) {
        setStatus('evidence-sha256', hex);
        $('evidence-sha256').dataset.done = 'true';
      }
      return hex;
    });
    state.evidenceHash.catch((exc) => showError(
      _('The evidence file could not be read: %(message)s', { message: exc.message })));
  }

  function clearResult() {
    $('result').hidden = true;
    for (const id of ['summary', 'checks', 'faults']) $(id).replaceChildren();
    $('timeline').querySelector('tbody').replaceChildren();
    $('error').textContent = '';
    $('error').hidden = true;
    const v = $('verdict');
    v.textContent = '';
    v.dataset.verdict = '';
    v.className = 'verdict';
  }

  function showError(text) {
    $('result').hidden = false;
    $('error').hidden = false;
    $('error').textContent = text;
  }

  async function readBundleText() {
    if (state.bundleFile) {
      if (state.bundleFile.size > MAX_BUNDLE_BYTES) {
        return { error: _('The bundle file is larger than 512 MiB.') };
      }
      let bytes;
      try {
        bytes = await state.bundleFile.arrayBuffer();
      } catch (exc) {
        return { error: _('The bundle file could not be read: %(message)s',
          { message: exc.message }) };
      }
      try {
        return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
      } catch (exc) {
        return { malformed: 'not JSON (the file is not UTF-8 text)' };
      }
    }
    if (state.embedded !== null) return { text: state.embedded };
    return { error: _('Choose a bundle file first.') };
  }

  async function runVerify() {
    const button = $('verify');
    clearResult();
    const logKey = $('log-key').value.trim();
    if (!logKey) {
      showError(_('Enter the log key you obtained out of band.'));
      $('log-key').focus();
      return;
    }
    const witnesses = $('witness-keys').value.split('\n').map((l) => l.trim())
      .filter((l) => l);
    const quorumText = $('quorum').value.trim();
    const quorum = quorumText === '' ? witnesses.length : Number(quorumText);
    if (!Number.isInteger(quorum) || quorum < 0) {
      showError(_('The quorum must be a whole number.'));
      return;
    }
    button.disabled = true;
    document.body.dataset.busy = 'true';
    try {
      const source = await readBundleText();
      if (source.error) { showError(source.error); return; }
      if (source.malformed) { render(malformed(source.malformed), false); return; }
      let evidence = null;
      if (state.evidenceHash) {
        setStatus('verify-status', _('Hashing the evidence file…'));
        evidence = await state.evidenceHash;
      }
      setStatus('verify-status', _('Verifying…'));
      const result = await verify(source.text, { logKey, witnesses, quorum,
        evidenceSha256: evidence });
      render(result, evidence !== null);
      setStatus('verify-status', '');
    } catch (exc) {
      showError(_('The verification stopped with an internal error: %(message)s',
        { message: exc && exc.message ? exc.message : String(exc) }));
      setStatus('verify-status', '');
    } finally {
      button.disabled = false;
      delete document.body.dataset.busy;
    }
  }

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function render(result, withEvidence) {
    $('result').hidden = false;
    const v = $('verdict');
    v.dataset.verdict = result.verdict;
    v.className = 'verdict verdict-' + result.verdict;
    v.textContent = _(VERDICT_LABELS[result.verdict]);
    if (result.verdict === 'malformed') {
      $('error').hidden = false;
      $('error').textContent = result.error;
      return;
    }
    const summary = $('summary');
    const row = (label, value, mono) => {
      summary.append(el('dt', _(label)));
      const dd = el('dd', value === null || value === undefined || value === '' ? _('none')
        : value);
      if (mono) dd.className = 'mono';
      summary.append(dd);
    };
    // With a fault nothing the bundle says is to be relied on: no custody facts shown.
    const trusted = result.verdict !== 'fault';
    row(N_('Artefact'), result.artefact_id, true);
    if (trusted && result.also_registered_as.length) {
      row(N_('Also registered as'), result.also_registered_as.join(', '), true);
    }
    if (trusted) row(N_('Registered SHA-256'), result.registered_sha256, true);
    row(N_('Evidence SHA-256'), withEvidence ? result.sha256 : _('no evidence file given'),
      withEvidence);
    if (trusted && result.custodian !== null) row(N_('Custodian'), result.custodian, false);
    if (trusted && result.case !== null) row(N_('Case'), result.case, false);
    if (trusted) row(N_('Incidents'), String(result.incidents), false);
    row(N_('History complete'), result.complete ? _('yes') : _('no'), false);
    if (result.checkpoint) {
      row(N_('Log'), result.checkpoint.origin, true);
      row(N_('Tree size'), String(result.checkpoint.size), false);
      row(N_('Tree root'), result.checkpoint.root, true);
      row(N_('State-map root'), result.checkpoint.map_root, true);
    }
    row(N_('Witnesses'), result.witnesses.join(', '), false);
    renderChecks(result.checks);
    const faults = $('faults');
    if (!result.faults.length) faults.append(el('li', _('No fault found.'), { class: 'none' }));
    for (const f of result.faults) {
      const li = el('li', null, { 'data-kind': f.kind });
      li.append(el('strong', `${f.kind}: ${_(KIND_LABELS[f.kind] || f.kind)}`));
      li.append(el('span', f.detail, { class: 'detail' }));
      faults.append(li);
    }
    const body = $('timeline').querySelector('tbody');
    for (const t of trusted ? result.timeline : []) {
      const tr = el('tr', null, { 'data-index': String(t.index) });
      tr.append(el('td', t.index), el('td', t.ledger_time, { class: 'mono' }),
        el('td', t.kind, { class: 'mono' }),
        el('td', t.signer_name ? `${t.signer} (${t.signer_name})` : t.signer),
        el('td', t.jurisdiction ? `${t.org} (${t.jurisdiction})` : t.org),
        el('td', _(t.summary_id, t.summary_args)));
      body.append(tr);
    }
    $('timeline').hidden = !trusted || !result.timeline.length;
    $('timeline-heading').hidden = $('timeline').hidden;
    v.focus();
  }

  function renderChecks(c) {
    const list = $('checks');
    const item = (ok, text) => list.append(el('li', text, { class: ok ? 'ok' : 'not-ok' }));
    item(c.checkpoint, c.checkpoint
      ? _('Checkpoint signature verified with the log key you entered')
      : _('Checkpoint signature NOT verified with the log key you entered'));
    if (c.witnesses_demanded) {
      item(c.witness_policy_met, _('Witness cosignatures verified: %(n)s',
        { n: c.cosignatures }));
    }
    item(c.inclusion === c.entries, _('Inclusion proofs verified: %(n)s of %(total)s',
      { n: c.inclusion, total: c.entries }));
    item(c.leaves === c.entries, _('Log entries re-encoded and accepted: %(n)s of %(total)s',
      { n: c.leaves, total: c.entries }));
    item(c.map_proofs === c.maps, _('State-map proofs verified: %(n)s of %(total)s',
      { n: c.map_proofs, total: c.maps }));
    item(c.history_checked && c.history_ok,
      _('History accumulator recomputed over %(n)s entries', { n: c.history }));
    item(c.signatures_checked > 0 && c.signatures === c.signatures_checked,
      _('Event signatures verified (Ed25519): %(n)s of %(total)s, by %(signers)s signers',
        { n: c.signatures, total: c.signatures_checked, signers: c.signers }));
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', initPage);
  } else {
    initPage();
  }
})(typeof window !== 'undefined' ? window : globalThis);
