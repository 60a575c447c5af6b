// Shared pieces of every generated file: the header and systemd's INI-like syntax.
import { posix } from 'node:path';
import { encode } from 'ini';
import { fillTemplate } from '../host/templates';

export type UnitValue = string | string[] | undefined;
/** Sections in a fixed order, keys in a fixed order; undefined values and empty lists are left out. */
export type UnitSections = [section: string, entries: [key: string, value: UnitValue][]][];

/** The header line every generated file starts with, naming its source manifest. */
export function renderHeader(manifestFile: string, subject: string, comment = '#'): string {
  // The file name is the user's, not validated: only plain characters (no newline) reach a
  // generated file.
  const source = posix.basename(manifestFile).replace(/[^A-Za-z0-9._+@ -]/g, '_');
  const text = fillTemplate('header.txt', { source, subject });
  return comment === '#' ? text : text.replace(/^#/gm, comment);
}

// systemd repeats keys (Bind= twice) instead of using lists; ini writes arrays that way when
// bracketedArray is off. Values are validated by the schema so that ini never needs to escape them.
export function renderUnit(header: string, sections: UnitSections): string {
  const obj: Record<string, Record<string, string | string[]>> = {};
  for (const [section, entries] of sections) {
    const body: Record<string, string | string[]> = {};
    for (const [key, value] of entries) {
      if (value === undefined || (Array.isArray(value) && value.length === 0)) continue;
      body[key] = value;
    }
    if (Object.keys(body).length > 0) obj[section] = body;
  }
  const text = encode(obj, { bracketedArray: false, whitespace: false });
  return `${header}\n${text.trimEnd()}\n`;
}
