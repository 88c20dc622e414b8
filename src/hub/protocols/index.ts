import type { Format } from '../../codec.ts';
import type { WireProtocol } from '../protocol.ts';
import type { ClientType } from '../session.ts';
import { isTypeForm } from './b25-messages.ts';
import { b25TuiProtocol } from './b25-tui.ts';
import { b25WebProtocol } from './b25-web.ts';
import { hubProtocol } from './hub.ts';

/** The protocols a connection may speak (`?protocol=`); `hub` is the default and the documented one. */
export const PROTOCOL_NAMES = ['hub', 'b25-web', 'b25-tui'] as const;
export type ProtocolName = (typeof PROTOCOL_NAMES)[number];
/** The b25 clients' protocols are JSON text only. */
export const JSON_ONLY = new Set<ProtocolName>(['b25-web', 'b25-tui']);
/** The cadence a b25 protocol is served at when the upgrade did not say (`?type=`). */
const CADENCE: Record<Exclude<ProtocolName, 'hub'>, ClientType> = { 'b25-web': 'web', 'b25-tui': 'tui' };

export interface ProtocolSettings {
  /** legacy.tui_orderbook_symbol: the book the terminal UI is sent (default: the first symbol with a book). */
  tuiOrderbookSymbol?: string;
}

/** The protocols of one hub, built once: the fan-out shares frames between clients of one protocol instance. */
export class Protocols {
  private readonly tui: WireProtocol;

  constructor(settings: ProtocolSettings = {}) {
    this.tui = b25TuiProtocol(settings.tuiOrderbookSymbol);
  }

  named(name: ProtocolName, format: Format): WireProtocol {
    if (name === 'b25-web') return b25WebProtocol;
    if (name === 'b25-tui') return this.tui;
    return hubProtocol(format);
  }

  /** The cadence of a b25 protocol named at the upgrade, when `?type=` was not given. */
  static cadenceOf(name: ProtocolName, type: ClientType | undefined): ClientType {
    return type ?? (name === 'hub' ? 'web' : CADENCE[name]);
  }

  /**
   * The protocol a connection that named none is switched to by its first message: the b25 clients' `{"type": …}`
   * form selects the web protocol when the upgrade said `?type=web`, the terminal's otherwise (with its cadence).
   * Undefined: the connection stays on the hub protocol.
   */
  chosenBy(
    data: Buffer,
    binary: boolean,
    type: ClientType,
    typeGiven: boolean,
  ): { protocol: WireProtocol; type: ClientType } | undefined {
    if (!isTypeForm(data, binary)) return undefined;
    if (typeGiven && type === 'web') return { protocol: b25WebProtocol, type: 'web' };
    return { protocol: this.tui, type: 'tui' };
  }
}
