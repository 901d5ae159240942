// Entry of the init process (`capsule init`, started by create/run, never by a user).
import { runInit } from "./init.ts";
runInit();
