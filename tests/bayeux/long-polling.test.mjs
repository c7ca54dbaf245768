// The real CometD JavaScript client, configured to use only the long-polling
// transport, against halley's /bayeux (its own halley for this file).
import { transportSuite } from './lib/suite.mjs';

transportSuite('long-polling');
