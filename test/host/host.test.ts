// firstInvalidUtf8: where the real host says a manifest stops being UTF-8. Every sequence that
// Node decodes to U+FFFD (other than an encoded U+FFFD itself) is reported at its first byte.
import { firstInvalidUtf8 } from '../../src/host/host';

/** `prefix` as UTF-8, then the raw `bytes`, then a newline. */
const bytesAfter = (prefix: string, bytes: number[]) => Buffer.concat([Buffer.from(prefix, 'utf8'), Buffer.from(bytes), Buffer.from('\n')]);

describe('firstInvalidUtf8', () => {
  test.each([
    ['a lone continuation byte', [0x80]],
    ['0xc0 (a lead byte that is always overlong)', [0xc0, 0xaf]],
    ['0xc1 (a lead byte that is always overlong)', [0xc1, 0xbf]],
    ['0xf5 (a lead byte beyond U+10FFFF)', [0xf5, 0x80, 0x80, 0x80]],
    ['0xff', [0xff]],
    ['a lead byte without its continuation', [0xc3, 0x41]],
    ['a three-byte overlong form', [0xe0, 0x80, 0xaf]],
    ['the largest three-byte overlong form', [0xe0, 0x9f, 0xbf]],
    ['an encoded UTF-16 surrogate (U+D800)', [0xed, 0xa0, 0x80]],
    ['an encoded UTF-16 surrogate (U+DFFF)', [0xed, 0xbf, 0xbf]],
    ['a four-byte overlong form', [0xf0, 0x80, 0x80, 0xaf]],
    ['the largest four-byte overlong form', [0xf0, 0x8f, 0xbf, 0xbf]],
    ['U+110000', [0xf4, 0x90, 0x80, 0x80]],
  ])('%s is reported at its first byte', (_name, bytes) => {
    const prefix = 'machines: {}\n# é ';
    expect(firstInvalidUtf8(bytesAfter(prefix, bytes))).toBe(Buffer.byteLength(prefix));
  });

  test('a sequence cut off at the end is reported at its first byte', () => {
    expect(firstInvalidUtf8(Buffer.from([0x61, 0xf0, 0x9f, 0x98]))).toBe(1);
  });

  test('the valid sequences next to each limit are not reported: U+0800, U+D7FF, U+E000, an encoded U+FFFD, U+10000, U+10FFFF', () => {
    const valid = '\u0800\ud7ff\ue000\ufffd\u{10000}\u{10ffff}';
    expect(firstInvalidUtf8(bytesAfter(valid, [0xff]))).toBe(Buffer.byteLength(valid));
  });

  // All-valid input has no invalid offset: -1, which cannot be mistaken for offset 0.
  test('valid UTF-8 has no invalid byte: the answer is -1', () => {
    const text = Buffer.from('machines: {}\n', 'utf8');
    expect(firstInvalidUtf8(text)).toBe(-1);
  });
});
