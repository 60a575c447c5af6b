// What progress shows of a program's output: lines split at every line end a program may use,
// blank ones dropped, and nothing a machine printed reaching the terminal raw.
import { outputLines } from '../../src/host/runner';

describe('outputLines', () => {
  test('splits at \\n, \\r\\n and a lone \\r, and drops blank lines', () => {
    expect(outputLines('Get:1 a\r\nGet:2 b\n\n  \nProgress 10%\rProgress 20%\r')).toEqual(['Get:1 a', 'Get:2 b', 'Progress 10%', 'Progress 20%']);
  });

  test('escapes control characters: ESC and CSI sequences, C1 controls, DEL, bell; keeps tabs', () => {
    expect(outputLines('\u001b[2J\u001b]0;owned\u0007title\tok\u009b31m\u007f')).toEqual(['\\x1b[2J\\x1b]0;owned\\x07title\tok\\u009b31m\\x7f']);
  });
});
